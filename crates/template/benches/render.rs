//! Criterion benchmark of rendering a realistic ~20 KB email (15 substitutions, 5 products),
//! with and without link rewriting; the compiled variant is reused as a worker's cache does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clarion_template::bench::{Mode, Workload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn render(c: &mut Criterion) {
    let workload = Workload::new().expect("benchmark workload compiles");
    let mut group = c.benchmark_group("render_email");
    group.throughput(Throughput::Elements(1));
    group.bench_function("no_link_rewriting", |b| {
        b.iter(|| workload.render(Mode::NoTracking).unwrap());
    });
    group.bench_function("with_link_rewriting", |b| {
        b.iter(|| workload.render(Mode::Tracking).unwrap());
    });
    group.bench_function("with_link_rewriting_each_link_signed", |b| {
        b.iter(|| workload.render(Mode::TrackingEachLinkSigned).unwrap());
    });
    group.bench_function("with_link_rewriting_derived_text", |b| {
        b.iter(|| workload.render(Mode::TrackingDerivedText).unwrap());
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
