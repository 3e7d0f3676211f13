//! Thumbnailing figures, against the target:
//!
//! - `fit` on a 2048x2048 PNG to the default budget (768 px, 300 KB): decode, downscale,
//!   JPEG encode (target: under 60 ms);
//! - the same on a 4096x4096 PNG (no target in the issue; 250 ms keeps it interactive);
//! - a 512x512 PNG already within the budget, checked and passed through (target: 15 ms).
//!
//! The inputs are generated: gradients with per-pixel noise, PNG-compressed at the default
//! level like ComfyUI's own outputs, so neither decoding nor encoding gets an easy ride. Run
//! with `cargo bench --bench images`; it prints median, p99 and max per figure and exits
//! non-zero when a median misses its target.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use comfyui_agent::images::{ImageBudget, fit};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, Rgb, RgbImage};

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};

/// Gradients plus xorshift noise of `noise` (a bit mask): a PNG that does not compress to
/// nothing.
fn busy_png(side: u32, noise: u64) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let pixels = RgbImage::from_fn(side, side, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state & noise) as u32;
        Rgb([
            (x * 255 / side + noise) as u8,
            (y * 255 / side + noise / 2) as u8,
            ((x + y) * 127 / side + noise) as u8,
        ])
    });
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(pixels)
        .write_with_encoder(PngEncoder::new_with_quality(
            &mut out,
            CompressionType::Default,
            FilterType::Adaptive,
        ))
        .expect("encode png");
    out
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let budget = ImageBudget::default();
    let mut figures = Vec::new();

    for (side, iterations, target) in [
        (2048, 30, Duration::from_millis(60)),
        (4096, 10, Duration::from_millis(250)),
    ] {
        let png = busy_png(side, 0x1F);
        // Once outside the timing: check the result and warm the allocator.
        let fitted = fit(&png, &budget).expect("fits");
        assert!(fitted.bytes.len() <= budget.max_bytes);
        assert!(fitted.width.max(fitted.height) <= budget.max_side);
        let _ = writeln!(
            std::io::stdout().lock(),
            "{side}x{side} PNG of {} KB -> {}x{} {} of {} KB",
            png.len() / 1024,
            fitted.width,
            fitted.height,
            fitted.mime,
            fitted.bytes.len() / 1024
        );
        figures.push(Figure {
            name: format!("fit {side}x{side} PNG to 768 px / 300 KB"),
            target,
            tail: false,
            samples: measure(iterations, || {
                std::hint::black_box(fit(&png, &budget).expect("fits"));
            }),
        });
    }

    // Gentler noise, like a rendered picture, so it is within the byte budget.
    let small = busy_png(512, 0x03);
    assert!(small.len() <= budget.max_bytes, "{} bytes", small.len());
    figures.push(Figure {
        name: "fit 512x512 PNG within budget (checked, passed through)".to_string(),
        target: Duration::from_millis(15),
        tail: false,
        samples: measure(50, || {
            let fitted = fit(&small, &budget).expect("fits");
            assert_eq!(fitted.bytes.len(), small.len());
        }),
    });

    figure::finish(&figures)
}
