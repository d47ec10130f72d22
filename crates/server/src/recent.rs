//! Figures too slow to compute on every page view (the overview's whole-table counts and
//! trend, a large segment's value and overlap, a finished million-recipient run's counts),
//! kept as last computed.
//!
//! A view is answered from the last computation; once that is older than
//! [`Recent::max_age`] (sixty times what it took, between ten seconds and five minutes), one
//! view starts a new computation in the background for the views after it. Only a key never
//! computed waits for its figures.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clarion_model::Timestamp;

/// Figures by key, as last computed, at most `capacity` keys (the least recently computed
/// go first).
pub struct Recent<K, V> {
    entries: Arc<Mutex<HashMap<K, Computed<V>>>>,
    capacity: usize,
    /// What the figures are, for the log when a background computation fails.
    what: &'static str,
    /// Figures computed faster than this are not kept: the next view computes them again.
    keep_from: Duration,
}

impl<K, V> Clone for Recent<K, V> {
    fn clone(&self) -> Self {
        Recent {
            entries: self.entries.clone(),
            capacity: self.capacity,
            what: self.what,
            keep_from: self.keep_from,
        }
    }
}

struct Computed<V> {
    done: Instant,
    /// How long the computation took.
    took: Duration,
    at: Timestamp,
    value: Arc<V>,
    recomputing: bool,
}

impl<K, V> Recent<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Send + Sync + 'static,
{
    /// An empty cache of at most `capacity` keys; `what` names the figures in the log.
    pub fn new(what: &'static str, capacity: usize) -> Self {
        Recent {
            entries: Arc::default(),
            capacity: capacity.max(1),
            what,
            keep_from: Duration::ZERO,
        }
    }

    /// Keeps only figures that took at least `took` to compute: cheaper ones are computed
    /// at every view, exact at every view.
    #[must_use]
    pub fn keeping_from(mut self, took: Duration) -> Self {
        self.keep_from = took;
        self
    }

    /// How long figures are shown before they are computed again: sixty times what they took
    /// to compute (so recomputing costs at most a sixtieth of a core), at least ten seconds
    /// and at most five minutes. A small workspace sees new contacts within seconds; one of a
    /// million contacts, whose trend takes about 3 s, every three minutes.
    pub fn max_age(took: Duration) -> Duration {
        (took * 60).clamp(Duration::from_secs(10), Duration::from_secs(300))
    }

    /// The figures of `key` and when they were computed: computed now by `compute` when
    /// never computed, else the last ones (with `compute` started in the background when
    /// they are too old).
    ///
    /// # Errors
    /// What `compute` returns when it runs now.
    pub async fn get<E, F, Fut>(&self, key: K, compute: F) -> Result<(Arc<V>, Timestamp), E>
    where
        E: Display + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let known = self
            .lock()
            .get(&key)
            .map(|entry| (entry.value.clone(), entry.at, entry.done, entry.took));
        if let Some((value, at, done, took)) = known {
            if done.elapsed() >= Self::max_age(took) && self.start_recompute(&key) {
                let cache = self.clone();
                tokio::spawn(async move { cache.compute_and_keep(key, compute()).await });
            }
            return Ok((value, at));
        }
        let started = Instant::now();
        let value = compute().await?;
        Ok((self.store(key, value, started.elapsed()), Timestamp::now()))
    }

    /// Computes the figures of `key` now unless they are known (at start, so that the first
    /// view does not wait for them); a failure is logged and left to that view.
    pub async fn warm<E: Display>(&self, key: K, compute: impl Future<Output = Result<V, E>>) {
        if !self.contains(&key) {
            self.compute_and_keep(key, compute).await;
        }
    }

    /// Whether `key` was computed already.
    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    /// Runs `compute` and keeps its figures; a failure is logged, and the last figures stay.
    async fn compute_and_keep<E: Display>(
        &self,
        key: K,
        compute: impl Future<Output = Result<V, E>>,
    ) {
        let started = Instant::now();
        match compute.await {
            Ok(value) => {
                self.store(key, value, started.elapsed());
            }
            Err(error) => {
                tracing::warn!(%error, "{} could not be computed", self.what);
                self.abandon_recompute(&key);
            }
        }
    }

    /// Keeps `value` as the figures of `key`, computed in `took` (unless that is less than
    /// [`Recent::keeping_from`]).
    pub fn store(&self, key: K, value: V, took: Duration) -> Arc<V> {
        let value = Arc::new(value);
        let mut entries = self.lock();
        if took < self.keep_from {
            entries.remove(&key);
            return value;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.done)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Computed {
                done: Instant::now(),
                took,
                at: Timestamp::now(),
                value: value.clone(),
                recomputing: false,
            },
        );
        value
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Computed<V>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a recomputation as started; false when one is under way already.
    fn start_recompute(&self, key: &K) -> bool {
        match self.lock().get_mut(key) {
            Some(entry) if !entry.recomputing => {
                entry.recomputing = true;
                true
            }
            _ => false,
        }
    }

    fn abandon_recompute(&self, key: &K) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.recomputing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_kept_sixty_times_their_cost_within_bounds() {
        let ms = Duration::from_millis;
        type Cache = Recent<u8, u8>;
        assert_eq!(Cache::max_age(ms(5)), Duration::from_secs(10));
        assert_eq!(Cache::max_age(ms(3_000)), Duration::from_secs(180));
        assert_eq!(Cache::max_age(ms(60_000)), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_key_is_computed_once_then_served_and_the_oldest_key_makes_room() {
        let cache: Recent<u8, u32> = Recent::new("test figures", 2);
        let (value, _) = cache
            .get(1, || async { Ok::<_, String>(10) })
            .await
            .unwrap();
        assert_eq!(*value, 10);
        // Fresh figures are served without computing.
        let (value, _) = cache
            .get(1, || async { Err::<u32, _>("computed again".to_owned()) })
            .await
            .unwrap();
        assert_eq!(*value, 10);
        cache.store(2, 20, Duration::ZERO);
        cache.store(3, 30, Duration::ZERO);
        assert!(!cache.contains(&1), "the least recently computed key goes");
        assert!(cache.contains(&2) && cache.contains(&3));
        // Figures cheaper than the threshold are computed at every view.
        let cheap: Recent<u8, u32> =
            Recent::new("cheap figures", 2).keeping_from(Duration::from_secs(3600));
        for expected in [1, 2] {
            let (value, _) = cheap
                .get(1, move || async move { Ok::<_, String>(expected) })
                .await
                .unwrap();
            assert_eq!(*value, expected);
        }
        // A failure of a first computation is the caller's.
        let failed = cache
            .get(4, || async { Err::<u32, _>("no database".to_owned()) })
            .await;
        assert_eq!(failed.err().as_deref(), Some("no database"));
    }
}
