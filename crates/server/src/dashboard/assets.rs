//! The dashboard's static files, built into the binary: its own stylesheet and script, and
//! the vendored htmx (0BSD) and uPlot (MIT) with their licenses.

use actix_web::{HttpResponse, http::header, web};

use super::PageError;

/// Every asset: path under `/assets/`, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 12] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "tables.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/tables.js"),
    ),
    (
        "segments.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/segments.js"),
    ),
    (
        "builder.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/builder.js"),
    ),
    (
        "vendor/htmx/htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx/htmx.min.js"),
    ),
    (
        "vendor/htmx/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx/LICENSE"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
    ),
    (
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/LICENSE"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/favicon.svg"),
    ),
    (
        "THIRD-PARTY.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/THIRD-PARTY.txt"),
    ),
];

/// `GET /assets/{path}`.
pub async fn serve(path: web::Path<String>) -> Result<HttpResponse, PageError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == path.as_str())
        .ok_or_else(|| PageError::NotFound("There is no such file.".into()))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(*bytes))
}
