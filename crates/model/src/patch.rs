use serde::{Deserialize, Deserializer};

/// A field of a partial update: left out (keep the stored value), `null` (clear it) or a new
/// value. Use with `#[serde(default)]` so that a missing field becomes [`Patch::Keep`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Patch<T> {
    /// Applies the patch to a stored value.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current,
            Patch::Clear => None,
            Patch::Set(value) => Some(value),
        }
    }

    /// The value a new row gets: `Keep` and `Clear` both mean none.
    pub fn into_new(self) -> Option<T> {
        self.apply(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Patch::Set(value),
            None => Patch::Clear,
        })
    }
}
