//! Prints the rendering benchmark: `cargo run --release -p clarion-template --example template_bench`.

use std::time::Duration;

fn main() -> Result<(), clarion_template::TemplateError> {
    let figures = clarion_template::bench::run(Duration::from_secs(3))?;
    println!("{figures}");
    Ok(())
}
