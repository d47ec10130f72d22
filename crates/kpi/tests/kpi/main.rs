//! clarion-kpi's statistics and models against published figures and independent
//! computations (statsmodels and scipy over generated data).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod clv;
mod machine;
mod stats;
