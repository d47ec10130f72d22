//! Rendering throughput, for `clarion bench render`, the `bench` example and the criterion
//! bench.
//!
//! The workload is a realistic promotional email: about 20 KB of HTML once rendered, with a
//! style sheet, about 15 substitutions (names, money, dates and numbers in the contact's locale
//! and time zone), a loop over 5 recommended products, and about 20 links. The compiled
//! variant is reused for every render, as a worker's cache does.

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::content::EmailContent;
use crate::context::{Recipient, RenderContext};
use crate::engine::{CompiledEmail, Engine};
use crate::error::TemplateError;
use crate::tracking::{MessageTracking, Tracker, TrackingKeys};

/// The benchmark email's HTML template.
pub const SAMPLE_HTML: &str = include_str!("bench/email.html");

#[derive(Serialize)]
struct Traits {
    rfm_segment: &'static str,
    clv: f64,
}

#[derive(Serialize)]
struct Contact {
    id: i64,
    email: &'static str,
    first_name: &'static str,
    city: &'static str,
    currency: &'static str,
    loyalty_points: i64,
    points_value: f64,
    last_order_at: &'static str,
    traits: Traits,
}

#[derive(Serialize)]
struct Product {
    name: String,
    url: String,
    image: String,
    price: f64,
    old_price: Option<f64>,
    blurb: &'static str,
}

#[derive(Serialize)]
struct Extra {
    products: Vec<Product>,
}

/// The benchmark variant: [`SAMPLE_HTML`] with a subject, preheader, short text body and
/// sender.
#[must_use]
pub fn sample_email(derive_text: bool) -> EmailContent {
    EmailContent {
        subject: "{{ contact.first_name }}, your {{ campaign.name }} picks are in".to_owned(),
        preheader: "Early access for {{ segment.name }} members until {{ campaign.ends_at|date }}"
            .to_owned(),
        html: SAMPLE_HTML.to_owned(),
        text: (!derive_text).then(|| {
            "Hello {{ contact.first_name }},\n\nOur spring collection is online: \
             https://shop.example.com/spring\n{% for p in extra.products %}- {{ p.name }}: \
             {{ p.price|money(contact.currency) }} {{ p.url }}\n{% endfor %}\n\
             Unsubscribe: {{ unsubscribe_url }}\n"
                .to_owned()
        }),
        from: "Shop Club <club@shop.example.com>".to_owned(),
        reply_to: Some("care@shop.example.com".to_owned()),
    }
}

/// A contact of the benchmark, with 5 recommended products, reading in Swiss German.
///
/// # Errors
/// Never in practice; the recipient settings are constants.
pub fn sample_context() -> Result<RenderContext, TemplateError> {
    let contact = Contact {
        id: 48_213,
        email: "anna.muster@example.org",
        first_name: "Anna <Nina>",
        city: "Zürich",
        currency: "CHF",
        loyalty_points: 12_840,
        points_value: 128.4,
        last_order_at: "2026-02-11T17:45:00Z",
        traits: Traits {
            rfm_segment: "Champions",
            clv: 2_345.5,
        },
    };
    let products = (1..=5)
        .map(|i| Product {
            name: format!("Linen overshirt no. {i}"),
            url: format!("https://shop.example.com/p/linen-overshirt-{i}?utm_source=email&ref=rec"),
            image: format!("https://cdn.shop.example.com/p/{i}/main-480.jpg"),
            price: 89.0 + f64::from(i) * 10.0,
            old_price: (i % 2 == 0).then_some(129.0),
            blurb: "Breathable European linen, garment-dyed for a soft hand, relaxed fit.",
        })
        .collect();
    let segment = serde_json::json!({ "id": 7, "name": "Champions", "category": "value-based" });
    let campaign = serde_json::json!({
        "id": 311, "name": "Spring Edit", "slug": "spring-edit-2026",
        "ends_at": "2026-04-01T22:00:00Z"
    });
    Ok(RenderContext::new(
        &contact,
        &segment,
        &campaign,
        Recipient::new("de-CH", "Europe/Zurich")?,
    )
    .with_extra(&Extra { products }))
}

/// A tracker with a fixed key for the benchmark.
///
/// # Errors
/// Never in practice; the settings are constants.
pub fn sample_tracker() -> Result<Tracker, TemplateError> {
    Tracker::new(
        "https://t.shop.example.com",
        TrackingKeys::new(&[b"bench-signing-key-0123456789abcdef"])?,
    )?
    .with_unsubscribe_mailto("unsubscribe@shop.example.com")
}

/// On-CPU time of the calling thread, from Linux's `/proc/thread-self/schedstat`; `None`
/// elsewhere. Measuring CPU time keeps the per-core figure honest on a shared machine, where
/// wall-clock time also counts the time other processes held the core.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// One measured way of rendering.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub label: &'static str,
    /// Renders completed.
    pub renders: u64,
    /// Wall-clock time they took.
    pub elapsed: Duration,
    /// CPU time the measuring thread spent, when the platform reports it.
    pub cpu: Option<Duration>,
}

#[allow(clippy::cast_precision_loss)]
fn rate(renders: u64, time: Duration) -> f64 {
    renders as f64 / time.as_secs_f64().max(f64::MIN_POSITIVE)
}

impl Figure {
    /// Renders per second of one core: per CPU second when known, else per wall-clock second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        rate(self.renders, self.cpu.unwrap_or(self.elapsed))
    }

    /// Mean time of one render in microseconds (CPU time when known).
    #[must_use]
    pub fn micros_per_render(&self) -> f64 {
        1e6 / self.per_second().max(f64::MIN_POSITIVE)
    }

    /// Renders per wall-clock second on the one measuring thread.
    #[must_use]
    pub fn per_wall_second(&self) -> f64 {
        rate(self.renders, self.elapsed)
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} renders/s, {:.1} µs/render",
            self.label,
            group_thousands(self.per_second()),
            self.micros_per_render()
        )?;
        if self.cpu.is_some() {
            write!(
                f,
                " (per CPU second; wall clock {} renders/s)",
                group_thousands(self.per_wall_second())
            )?;
        }
        Ok(())
    }
}

fn group_thousands(v: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = v.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The results of [`run`].
#[derive(Debug, Clone)]
pub struct RenderBench {
    /// Size of the rendered HTML body in bytes (with tracking).
    pub html_bytes: usize,
    /// Links rewritten per message.
    pub links_rewritten: usize,
    /// The measured figures, one per way of rendering.
    pub figures: Vec<Figure>,
}

impl fmt::Display for RenderBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "email: {} bytes of HTML, {} tracked links, 5 products, single thread",
            self.html_bytes, self.links_rewritten
        )?;
        for (i, figure) in self.figures.iter().enumerate() {
            if i + 1 < self.figures.len() {
                writeln!(f, "{figure}")?;
            } else {
                write!(f, "{figure}")?;
            }
        }
        Ok(())
    }
}

/// How a render of the benchmark email is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Subject, preheader, HTML and text templates, no tracking (the HTML still passes through
    /// the rewriter for the link safety check).
    NoTracking,
    /// As `NoTracking`, plus tracked links and the open pixel, as a worker renders them:
    /// literal links share the message's one signed token and point into the link table.
    Tracking,
    /// As `Tracking`, with the text body derived from the HTML.
    TrackingDerivedText,
    /// As `Tracking`, but without a link table: every link signed on its own (how every
    /// message was rendered before link tables, and how previews still are).
    TrackingEachLinkSigned,
}

/// The link table name the benchmark renders with (variant 1, version 1).
const LINK_TABLE: &str = "1.1";

/// The compiled variant, context and tracker of the benchmark, ready to render.
#[derive(Debug)]
pub struct Workload {
    email: CompiledEmail,
    email_derived: CompiledEmail,
    ctx: RenderContext,
    tracker: Tracker,
}

impl Workload {
    /// Compiles the benchmark email (both text variants) and builds the contact.
    ///
    /// # Errors
    /// Only if the benchmark's own template were invalid.
    pub fn new() -> Result<Self, TemplateError> {
        let engine = Engine::default();
        Ok(Self {
            email: engine.compile_email(&sample_email(false))?,
            email_derived: engine.compile_email(&sample_email(true))?,
            ctx: sample_context()?,
            tracker: sample_tracker()?,
        })
    }

    /// Renders the email once in `mode`; returns the HTML size.
    ///
    /// # Errors
    /// Only if the benchmark's own template failed to render.
    pub fn render(&self, mode: Mode) -> Result<usize, TemplateError> {
        let mut tracking =
            MessageTracking::new(&self.tracker, "d-7f3a9c", "48213").with_link_table(LINK_TABLE);
        let email = match mode {
            Mode::NoTracking => {
                tracking.track_links = false;
                tracking.track_opens = false;
                &self.email
            }
            Mode::Tracking => &self.email,
            Mode::TrackingDerivedText => &self.email_derived,
            Mode::TrackingEachLinkSigned => {
                tracking.link_table = None;
                &self.email
            }
        };
        let rendered = email.render(&self.ctx, &tracking)?;
        Ok(black_box(rendered).html.len())
    }
}

fn measure(
    workload: &Workload,
    mode: Mode,
    label: &'static str,
    duration: Duration,
) -> Result<Figure, TemplateError> {
    // Warm caches and the allocator before timing.
    for _ in 0..200 {
        workload.render(mode)?;
    }
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let mut renders = 0u64;
    while start.elapsed() < duration {
        for _ in 0..100 {
            workload.render(mode)?;
        }
        renders += 100;
    }
    let elapsed = start.elapsed();
    let cpu = match (cpu_start, thread_cpu_time()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    Ok(Figure {
        label,
        renders,
        elapsed,
        cpu,
    })
}

/// Measures single-threaded renders per second of the benchmark email, spending about
/// `duration` on each way of rendering.
///
/// # Errors
/// Only if the benchmark's own template failed to compile or render.
pub fn run(duration: Duration) -> Result<RenderBench, TemplateError> {
    let workload = Workload::new()?;
    let tracked = workload.email.render(
        &workload.ctx,
        &MessageTracking::new(&workload.tracker, "d-7f3a9c", "48213").with_link_table(LINK_TABLE),
    )?;
    let links_rewritten =
        tracked.html.matches("/t/c/").count() + tracked.html.matches("/t/l/").count();
    let figures = vec![
        measure(
            &workload,
            Mode::NoTracking,
            "render (no link rewriting)",
            duration,
        )?,
        measure(
            &workload,
            Mode::Tracking,
            "render (with link rewriting)",
            duration,
        )?,
        measure(
            &workload,
            Mode::TrackingEachLinkSigned,
            "render (with link rewriting, each link signed on its own)",
            duration,
        )?,
        measure(
            &workload,
            Mode::TrackingDerivedText,
            "render (with link rewriting, text derived from HTML)",
            duration,
        )?,
    ];
    Ok(RenderBench {
        html_bytes: tracked.html.len(),
        links_rewritten,
        figures,
    })
}
