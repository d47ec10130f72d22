//! Integration tests of clarion-template: what a marketer saving a variant and a worker
//! rendering messages rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rendering;
mod robustness;
mod tracking;
mod validation;
mod webhook;

use clarion_template::{
    EmailContent, Engine, MessageTracking, Recipient, RenderContext, RenderedEmail, Tracker,
    TrackingKeys,
};
use serde_json::{Value, json};

pub const TRACKING_BASE: &str = "https://t.example.com";

pub fn tracker() -> Tracker {
    Tracker::new(
        TRACKING_BASE,
        TrackingKeys::new(&[b"test-signing-key-0123456789"]).unwrap(),
    )
    .unwrap()
}

pub fn context(contact: Value) -> RenderContext {
    context_in(contact, "en-US", "UTC")
}

pub fn context_in(contact: Value, locale: &str, tz: &str) -> RenderContext {
    RenderContext::new(
        &contact,
        &json!({"id": 3, "name": "Loyal"}),
        &json!({"id": 9, "name": "Spring"}),
        Recipient::new(locale, tz).unwrap(),
    )
}

/// An email variant with the given HTML and a plain subject and sender.
pub fn email(html: &str) -> EmailContent {
    EmailContent {
        subject: "Hello".to_owned(),
        html: html.to_owned(),
        from: "Shop <news@shop.example>".to_owned(),
        ..EmailContent::default()
    }
}

/// Compiles (with save-time checks) and renders for one contact with tracking on.
pub fn render(content: &EmailContent, ctx: &RenderContext) -> RenderedEmail {
    let compiled = Engine::default().compile_email(content).unwrap();
    let tracker = tracker();
    compiled
        .render(ctx, &MessageTracking::new(&tracker, "dlv-1", "42"))
        .unwrap()
}
