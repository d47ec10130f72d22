//! Integration tests of clarion-dispatch against real peers on 127.0.0.1: an aiosmtpd SMTP
//! server, an actix-web webhook receiver, and the file system.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod email;
mod peers;
mod webhook;
