//! Comparing two images without a model: perceptual hashes and pixel statistics.
//!
//! The verdict follows the original project's rules (§2.14 of the catalogue) on the average
//! hash and the share of changed pixels, so prompts written for it keep working; the
//! difference hash and the DCT hash are reported alongside, being steadier under small
//! shifts and colour changes.

use image::{DynamicImage, GrayImage, imageops::FilterType};
use serde::Serialize;

/// A pixel whose channels differ by more than this on average counts as changed.
const CHANGED_ABOVE: f64 = 10.0;

/// Images are compared at most this large (their common size, shrunk to fit): plenty for
/// statistics, and fast on 4K outputs.
const COMPARE_MAX_SIDE: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Identical,
    NearIdentical,
    Similar,
    Different,
    VeryDifferent,
}

/// What the comparison found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Comparison {
    pub verdict: Verdict,
    /// 1 minus the average hashes' Hamming distance over 64 (rounded to 4 places).
    pub hash_similarity: f64,
    /// Bits that differ between the 64-bit average hashes.
    pub hamming_distance: u32,
    /// Bits that differ between the 64-bit difference hashes (gradients).
    pub dhash_distance: u32,
    /// Bits that differ between the 64-bit DCT hashes (overall structure).
    pub phash_distance: u32,
    /// Share of pixels whose mean channel difference is above 10 (percent, 2 places).
    pub pixel_diff_pct: f64,
    /// Mean per-pixel channel difference (0-255, 2 places).
    pub avg_color_delta: f64,
    /// Pixels counted as changed, at the compared size.
    pub diff_pixels: u64,
    /// The size the pixels were compared at (`WxH`).
    pub compared_at: String,
    pub resolution_a: String,
    pub resolution_b: String,
}

/// Compares two decoded images.
pub fn compare(a: &DynamicImage, b: &DynamicImage) -> Comparison {
    let (hash_a, hash_b) = (average_hash(a), average_hash(b));
    let hamming_distance = (hash_a ^ hash_b).count_ones();
    let dhash_distance = (difference_hash(a) ^ difference_hash(b)).count_ones();
    let phash_distance = (dct_hash(a) ^ dct_hash(b)).count_ones();
    let pixels = pixel_stats(a, b);
    let verdict = verdict(hamming_distance, pixels.diff_pct);
    Comparison {
        verdict,
        hash_similarity: round(1.0 - f64::from(hamming_distance) / 64.0, 4),
        hamming_distance,
        dhash_distance,
        phash_distance,
        pixel_diff_pct: round(pixels.diff_pct, 2),
        avg_color_delta: round(pixels.mean_delta, 2),
        diff_pixels: pixels.changed,
        compared_at: format!("{}x{}", pixels.width, pixels.height),
        resolution_a: format!("{}x{}", a.width(), a.height()),
        resolution_b: format!("{}x{}", b.width(), b.height()),
    }
}

fn verdict(distance: u32, diff_pct: f64) -> Verdict {
    if distance == 0 && diff_pct == 0.0 {
        Verdict::Identical
    } else if distance <= 2 && diff_pct < 1.0 {
        Verdict::NearIdentical
    } else if distance <= 8 && diff_pct < 10.0 {
        Verdict::Similar
    } else if distance <= 16 {
        Verdict::Different
    } else {
        Verdict::VeryDifferent
    }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Grayscale at `width` x `height`, through a quick SIMD shrink first for large images.
fn small_gray(image: &DynamicImage, width: u32, height: u32) -> GrayImage {
    let gray = DynamicImage::ImageLuma8(image.to_luma8());
    let gray = if gray.width().max(gray.height()) > 256 {
        let longest = gray.width().max(gray.height());
        let w = (u64::from(gray.width()) * 256 / u64::from(longest)).max(1) as u32;
        let h = (u64::from(gray.height()) * 256 / u64::from(longest)).max(1) as u32;
        crate::images::resize(gray, w, h)
    } else {
        gray
    };
    image::imageops::resize(&gray.to_luma8(), width, height, FilterType::Lanczos3)
}

/// Bit i (row-major over 8x8) is set when pixel i is brighter than the mean.
pub fn average_hash(image: &DynamicImage) -> u64 {
    let small = small_gray(image, 8, 8);
    let values: Vec<f64> = small.pixels().map(|p| f64::from(p.0[0])).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    bits(values.iter().map(|value| *value > mean))
}

/// Bit set when a pixel is brighter than its right neighbour (9x8 grid).
pub fn difference_hash(image: &DynamicImage) -> u64 {
    let small = small_gray(image, 9, 8);
    bits((0..8).flat_map(|y| {
        let small = &small;
        (0..8).map(move |x| small.get_pixel(x, y).0[0] > small.get_pixel(x + 1, y).0[0])
    }))
}

/// The low 8x8 frequencies of a 32x32 DCT (without the constant term), each against their
/// median.
pub fn dct_hash(image: &DynamicImage) -> u64 {
    const N: usize = 32;
    let small = small_gray(image, N as u32, N as u32);
    let pixels: Vec<f64> = small.pixels().map(|p| f64::from(p.0[0])).collect();
    let cosines: Vec<f64> = (0..8)
        .flat_map(|k| {
            (0..N)
                .map(move |n| (std::f64::consts::PI / N as f64 * (n as f64 + 0.5) * k as f64).cos())
        })
        .collect();
    // Rows first (only the 8 lowest frequencies are needed), then columns.
    let mut rows = vec![0.0; N * 8];
    for y in 0..N {
        for k in 0..8 {
            rows[y * 8 + k] = (0..N).map(|x| pixels[y * N + x] * cosines[k * N + x]).sum();
        }
    }
    let mut low = Vec::with_capacity(64);
    for ky in 0..8 {
        for kx in 0..8 {
            low.push(
                (0..N)
                    .map(|y| rows[y * 8 + kx] * cosines[ky * N + y])
                    .sum::<f64>(),
            );
        }
    }
    let mut sorted: Vec<f64> = low[1..].to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    bits(low.iter().map(|value| *value > median))
}

fn bits(flags: impl Iterator<Item = bool>) -> u64 {
    flags.take(64).enumerate().fold(
        0u64,
        |hash, (i, set)| if set { hash | (1 << i) } else { hash },
    )
}

struct PixelStats {
    width: u32,
    height: u32,
    changed: u64,
    diff_pct: f64,
    mean_delta: f64,
}

/// Both images at their common size (bounded), pixel by pixel in RGB.
fn pixel_stats(a: &DynamicImage, b: &DynamicImage) -> PixelStats {
    let mut width = a.width().min(b.width()).max(1);
    let mut height = a.height().min(b.height()).max(1);
    let longest = width.max(height);
    if longest > COMPARE_MAX_SIDE {
        width = (u64::from(width) * u64::from(COMPARE_MAX_SIDE) / u64::from(longest)).max(1) as u32;
        height =
            (u64::from(height) * u64::from(COMPARE_MAX_SIDE) / u64::from(longest)).max(1) as u32;
    }
    let at_size = |image: &DynamicImage| {
        let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
        if (rgb.width(), rgb.height()) == (width, height) {
            rgb.to_rgb8()
        } else {
            crate::images::resize(rgb, width, height).to_rgb8()
        }
    };
    let (a, b) = (at_size(a), at_size(b));
    let mut changed = 0u64;
    let mut total_delta = 0.0;
    for (pa, pb) in a.pixels().zip(b.pixels()) {
        let delta =
            pa.0.iter()
                .zip(pb.0.iter())
                .map(|(x, y)| f64::from(x.abs_diff(*y)))
                .sum::<f64>()
                / 3.0;
        total_delta += delta;
        if delta > CHANGED_ABOVE {
            changed += 1;
        }
    }
    let total = u64::from(width) * u64::from(height);
    PixelStats {
        width,
        height,
        changed,
        diff_pct: 100.0 * changed as f64 / total as f64,
        mean_delta: total_delta / total as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn gradient(width: u32, height: u32, shift: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            let v = ((x * 255 / width.max(1)) as u8).wrapping_add(shift);
            Rgb([v, (y * 255 / height.max(1)) as u8, 128])
        }))
    }

    fn checker(size: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(size, size, |x, y| {
            if (x / 16 + y / 16) % 2 == 0 {
                Rgb([250, 250, 250])
            } else {
                Rgb([5, 5, 5])
            }
        }))
    }

    #[test]
    fn the_same_image_is_identical() {
        let image = gradient(320, 200, 0);
        let result = compare(&image, &image);
        assert_eq!(result.verdict, Verdict::Identical);
        assert_eq!(result.hamming_distance, 0);
        assert_eq!(result.dhash_distance, 0);
        assert_eq!(result.phash_distance, 0);
        assert_eq!(result.hash_similarity, 1.0);
        assert_eq!(result.diff_pixels, 0);
    }

    #[test]
    fn a_small_change_is_near_identical_and_a_new_picture_very_different() {
        let image = gradient(256, 256, 0);
        let mut touched = image.to_rgb8();
        for x in 0..10 {
            for y in 0..10 {
                touched.put_pixel(x, y, Rgb([255, 0, 0]));
            }
        }
        let result = compare(&image, &DynamicImage::ImageRgb8(touched));
        assert_eq!(result.verdict, Verdict::NearIdentical, "{result:?}");
        assert!(result.pixel_diff_pct > 0.0 && result.pixel_diff_pct < 1.0);

        let result = compare(&image, &checker(256));
        assert_eq!(result.verdict, Verdict::VeryDifferent, "{result:?}");
        assert!(result.phash_distance > 10, "{result:?}");
    }

    /// Soft blobs at irregular places, like a real picture's broad structure.
    fn scene(width: u32, height: u32) -> DynamicImage {
        let blobs = [
            (0.21, 0.33, 0.12, 200.0),
            (0.67, 0.58, 0.18, -150.0),
            (0.43, 0.81, 0.09, 120.0),
            (0.88, 0.17, 0.14, 90.0),
        ];
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            let (u, v) = (
                f64::from(x) / f64::from(width),
                f64::from(y) / f64::from(height),
            );
            let value = blobs
                .iter()
                .fold(100.0 + 40.0 * u, |acc, (cx, cy, r, amp)| {
                    let d2 = (u - cx).powi(2) + (v - cy).powi(2);
                    acc + amp * (-d2 / (r * r)).exp()
                });
            let value = value.clamp(0.0, 255.0) as u8;
            Rgb([value, value / 2 + 40, 255 - value])
        }))
    }

    #[test]
    fn a_rescaled_copy_hashes_alike_and_sizes_are_reported() {
        let big = scene(1600, 900);
        let small = DynamicImage::ImageRgb8(image::imageops::resize(
            &big.to_rgb8(),
            400,
            225,
            FilterType::Triangle,
        ));
        let result = compare(&big, &small);
        assert!(result.hamming_distance <= 2, "{result:?}");
        assert!(result.phash_distance <= 4, "{result:?}");
        assert_eq!(result.resolution_a, "1600x900");
        assert_eq!(result.resolution_b, "400x225");
        assert_eq!(result.compared_at, "400x225");
        assert!(matches!(
            result.verdict,
            Verdict::Identical | Verdict::NearIdentical | Verdict::Similar
        ));
    }

    #[test]
    fn verdict_thresholds_follow_the_original() {
        assert_eq!(verdict(0, 0.0), Verdict::Identical);
        assert_eq!(verdict(0, 0.5), Verdict::NearIdentical);
        assert_eq!(verdict(2, 0.99), Verdict::NearIdentical);
        assert_eq!(verdict(3, 0.5), Verdict::Similar);
        assert_eq!(verdict(8, 9.99), Verdict::Similar);
        assert_eq!(verdict(8, 10.0), Verdict::Different);
        assert_eq!(verdict(16, 90.0), Verdict::Different);
        assert_eq!(verdict(17, 0.0), Verdict::VeryDifferent);
    }
}
