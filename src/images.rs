//! Images sent back to the assistant: downscaled and re-encoded to fit a budget.
//!
//! A ComfyUI output can be a 4096x4096 PNG of tens of megabytes; an assistant needs a
//! look, not the file. [`fit`] turns any PNG, JPEG, WebP or GIF into a PNG or JPEG whose
//! longest side and size stay within an [`ImageBudget`], leaving images that already fit
//! untouched. Decoding is bounded (pixels per side and memory) so a crafted header cannot
//! make the server allocate gigabytes. The work is CPU-bound: async callers use
//! [`fit_async`], which runs it on a blocking thread.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

pub const DEFAULT_MAX_SIDE: u32 = 768;
pub const DEFAULT_MAX_BYTES: usize = 300 * 1024;
pub const DEFAULT_MAX_INLINE: usize = 4;

/// The largest width or height decoded at all.
pub const DECODE_MAX_SIDE: u32 = 16_384;
/// The most memory one decode may allocate (the decoded pixels included).
pub const DECODE_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// JPEG qualities tried in turn until the encoding fits.
const QUALITIES: [u8; 4] = [85, 70, 55, 40];
/// Below this longest side a picture stops being useful; give up rather than shrink further.
const MIN_SIDE: u32 = 32;

/// How much image data goes back to the assistant inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageBudget {
    /// Longest side, in pixels, of an image sent inline.
    pub max_side: u32,
    /// Largest encoded size, in bytes, of an image sent inline.
    pub max_bytes: usize,
    /// Images sent inline per result; the rest are listed by path only.
    pub max_inline: usize,
}

impl Default for ImageBudget {
    fn default() -> Self {
        Self {
            max_side: DEFAULT_MAX_SIDE,
            max_bytes: DEFAULT_MAX_BYTES,
            max_inline: DEFAULT_MAX_INLINE,
        }
    }
}

/// An image ready to send: the encoded bytes and what was done to get them.
#[derive(Clone, PartialEq, Eq)]
pub struct Fitted {
    pub bytes: Vec<u8>,
    /// `image/png` or `image/jpeg`.
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    pub original_width: u32,
    pub original_height: u32,
    pub original_bytes: usize,
}

impl Fitted {
    /// Whether the bytes are smaller in pixels than the original.
    pub fn downscaled(&self) -> bool {
        (self.width, self.height) != (self.original_width, self.original_height)
    }
}

impl std::fmt::Debug for Fitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fitted")
            .field("bytes", &self.bytes.len())
            .field("mime", &self.mime)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("original_width", &self.original_width)
            .field("original_height", &self.original_height)
            .field("original_bytes", &self.original_bytes)
            .finish()
    }
}

/// Why an image could not be fitted. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the file is not a PNG, JPEG, WebP or GIF image ({0}); open it by its path instead, or check that the node produced an image"
    )]
    Unrecognized(String),
    #[error(
        "the {format} image could not be decoded ({detail}); the file may be truncated or still being written: try again once the run has finished, or open it by its path"
    )]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    #[error(
        "the {format} image is {}, more than this server decodes (at most {DECODE_MAX_SIDE} px a side and {} MB of pixels); open it by its path instead",
        describe_size(*size),
        DECODE_MAX_BYTES / (1024 * 1024)
    )]
    TooLarge {
        format: &'static str,
        /// Width and height, when the header could be read.
        size: Option<(u32, u32)>,
    },
    #[error(
        "the {format} image could not be made smaller than {max_bytes} bytes even at {MIN_SIDE} px; raise COMFYUI_AGENT_IMAGE_MAX_KB or open it by its path"
    )]
    OverBudget {
        format: &'static str,
        max_bytes: usize,
    },
    #[error(
        "the {format} image uses a feature this server cannot decode ({detail}); open it by its path instead"
    )]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    #[error("resizing the image stopped unexpectedly ({0}); try again")]
    Worker(String),
}

/// The formats recognised by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Png,
    Jpeg,
    WebP,
    Gif,
}

/// The MIME type of an image this module can read, told from its first bytes.
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    Kind::sniff(bytes).map(|kind| match kind {
        Kind::Png => "image/png",
        Kind::Jpeg => "image/jpeg",
        Kind::WebP => "image/webp",
        Kind::Gif => "image/gif",
    })
}

impl Kind {
    fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::WebP)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::WebP => "WebP",
            Self::Gif => "GIF",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::WebP => ImageFormat::WebP,
            Self::Gif => ImageFormat::Gif,
        }
    }

    /// The MIME type when the bytes can be sent as they are.
    fn passthrough_mime(self) -> Option<&'static str> {
        match self {
            Self::Png => Some("image/png"),
            Self::Jpeg => Some("image/jpeg"),
            Self::WebP | Self::Gif => None,
        }
    }
}

/// Fits `bytes` (a PNG, JPEG, WebP or GIF; the first frame of an animation) to `budget`.
///
/// A PNG or JPEG already within the budget comes back byte for byte, once it is known to
/// decode. Anything else is scaled down so its longest side is at most `max_side` (aspect
/// ratio kept) and encoded as a PNG when it has real transparency and the PNG fits,
/// otherwise as a JPEG at the best quality that fits (85, 70, 55, 40), shrinking by a
/// quarter at a time when even the lowest quality does not. Bounded: images over
/// [`DECODE_MAX_SIDE`] a side or [`DECODE_MAX_BYTES`] decoded are refused from their header.
pub fn fit(bytes: &[u8], budget: &ImageBudget) -> Result<Fitted, ImageError> {
    let (kind, mut image, orientation) = decode_parts(bytes)?;
    let format = kind.name();
    let (width, height) = (image.width(), image.height());
    // Even bytes sent as they are get decoded first: a client that is handed a broken image
    // may reject the whole message, and a preview-sized decode costs a few milliseconds.
    let max_side = budget.max_side.max(1);
    if let Some(mime) = kind.passthrough_mime()
        && width.max(height) <= max_side
        && bytes.len() <= budget.max_bytes
    {
        return Ok(Fitted {
            bytes: bytes.to_vec(),
            mime,
            width,
            height,
            original_width: width,
            original_height: height,
            original_bytes: bytes.len(),
        });
    }
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let (original_width, original_height) = (image.width(), image.height());
    let image = shrink(image, max_side);
    let encoded = encode_within(image, budget.max_bytes).ok_or(ImageError::OverBudget {
        format,
        max_bytes: budget.max_bytes,
    })?;
    Ok(Fitted {
        bytes: encoded.bytes,
        mime: encoded.mime,
        width: encoded.width,
        height: encoded.height,
        original_width,
        original_height,
        original_bytes: bytes.len(),
    })
}

/// Decodes a PNG, JPEG, WebP or GIF (its first frame), upright, within the same bounds as
/// [`fit`] (images over [`DECODE_MAX_SIDE`] a side or [`DECODE_MAX_BYTES`] are refused from
/// their header).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let (_, mut image, orientation) = decode_parts(bytes)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

/// The bounded decode behind [`fit`] and [`decode`]: the format, the pixels as stored, and
/// the rotation the file asks for.
fn decode_parts(
    bytes: &[u8],
) -> Result<(Kind, DynamicImage, Option<image::metadata::Orientation>), ImageError> {
    let kind = Kind::sniff(bytes).ok_or_else(|| unrecognized(bytes))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(DECODE_MAX_SIDE);
    limits.max_image_height = Some(DECODE_MAX_SIDE);
    limits.max_alloc = Some(DECODE_MAX_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|error| decode_error(kind, error, png_header_size(bytes)))?;
    let (width, height) = decoder.dimensions();
    if width.max(height) > DECODE_MAX_SIDE || decoder.total_bytes() > DECODE_MAX_BYTES {
        return Err(ImageError::TooLarge {
            format: kind.name(),
            size: Some((width, height)),
        });
    }
    // Camera JPEGs store their rotation separately; show them the way up they are meant.
    let orientation = decoder.orientation().ok();
    let image = DynamicImage::from_decoder(decoder)
        .map_err(|error| decode_error(kind, error, Some((width, height))))?;
    Ok((kind, image, orientation))
}

fn unrecognized(bytes: &[u8]) -> ImageError {
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if bytes.is_empty() {
        ImageError::Unrecognized("it is empty".into())
    } else {
        ImageError::Unrecognized(format!("it starts with {}", head.join(" ")))
    }
}

/// [`fit`] on a blocking thread, so the async runtime keeps serving other calls meanwhile.
pub async fn fit_async(bytes: Vec<u8>, budget: ImageBudget) -> Result<Fitted, ImageError> {
    tokio::task::spawn_blocking(move || fit(&bytes, &budget))
        .await
        .map_err(|error| ImageError::Worker(error.to_string()))?
}

fn decode_error(kind: Kind, error: image::ImageError, size: Option<(u32, u32)>) -> ImageError {
    let format = kind.name();
    match error {
        image::ImageError::Limits(_) => ImageError::TooLarge { format, size },
        image::ImageError::Unsupported(detail) => ImageError::Unsupported {
            format,
            detail: detail.to_string(),
        },
        other => ImageError::Corrupt {
            format,
            detail: other.to_string(),
        },
    }
}

fn describe_size(size: Option<(u32, u32)>) -> String {
    match size {
        Some((width, height)) => format!("{width}x{height} pixels"),
        None => "too large".to_string(),
    }
}

/// Width and height from a PNG's IHDR, for the error when the decoder refuses the header
/// before saying them.
fn png_header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(12..24).filter(|h| h.starts_with(b"IHDR"))?;
    let width = u32::from_be_bytes(ihdr[4..8].try_into().ok()?);
    let height = u32::from_be_bytes(ihdr[8..12].try_into().ok()?);
    Some((width, height))
}

/// The size that keeps the aspect ratio with the longest side at most `max_side`.
fn scaled(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest))
            .clamp(1, u64::from(max_side)) as u32
    };
    (scale(width), scale(height))
}

fn shrink(image: DynamicImage, max_side: u32) -> DynamicImage {
    let (width, height) = scaled(image.width(), image.height(), max_side);
    if (width, height) == (image.width(), image.height()) {
        return image;
    }
    resize(image, width, height)
}

/// A bilinear (triangle) downscale whose kernel widens with the ratio, so detail is averaged
/// rather than skipped. 16-bit and float pixels become 8-bit first: this is a preview.
pub fn resize(image: DynamicImage, width: u32, height: u32) -> DynamicImage {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType as Kernel, PixelType, ResizeAlg, ResizeOptions, Resizer};

    let image = match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let pixel_type = match &image {
        DynamicImage::ImageLuma8(_) => PixelType::U8,
        DynamicImage::ImageLumaA8(_) => PixelType::U8x2,
        DynamicImage::ImageRgb8(_) => PixelType::U8x3,
        _ => PixelType::U8x4,
    };
    let mut target = Image::new(width, height, pixel_type);
    let resized = ImageRef::new(image.width(), image.height(), image.as_bytes(), pixel_type)
        .ok()
        .and_then(|source| {
            let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(Kernel::Bilinear));
            Resizer::new().resize(&source, &mut target, &options).ok()
        })
        .and_then(|()| {
            let raw = target.into_vec();
            match pixel_type {
                PixelType::U8 => image::GrayImage::from_raw(width, height, raw).map(Into::into),
                PixelType::U8x2 => {
                    image::GrayAlphaImage::from_raw(width, height, raw).map(Into::into)
                }
                PixelType::U8x3 => image::RgbImage::from_raw(width, height, raw).map(Into::into),
                _ => image::RgbaImage::from_raw(width, height, raw).map(Into::into),
            }
        });
    // Only mismatched buffers make the fast path fail; the slow one cannot.
    resized.unwrap_or_else(|| image.resize_exact(width, height, FilterType::Triangle))
}

struct Encoded {
    bytes: Vec<u8>,
    mime: &'static str,
    width: u32,
    height: u32,
}

/// PNG when the image has real transparency and the PNG fits; otherwise the best JPEG
/// that fits, shrinking by a quarter at a time when even the lowest quality is too big.
fn encode_within(image: DynamicImage, max_bytes: usize) -> Option<Encoded> {
    let transparent = has_transparency(&image);
    if transparent && let Some(png) = encode_png(&image).filter(|png| png.len() <= max_bytes) {
        return Some(Encoded {
            bytes: png,
            mime: "image/png",
            width: image.width(),
            height: image.height(),
        });
    }
    // JPEG has no alpha: flatten onto white, how most viewers show transparency.
    let mut image = if transparent {
        DynamicImage::ImageRgb8(flatten_on_white(&image))
    } else if image.color().has_color() {
        DynamicImage::ImageRgb8(image.to_rgb8())
    } else {
        DynamicImage::ImageLuma8(image.to_luma8())
    };
    let mut qualities: &[u8] = &QUALITIES;
    loop {
        for &quality in qualities {
            let jpeg = encode_jpeg(&image, quality)?;
            if jpeg.len() <= max_bytes {
                return Some(Encoded {
                    bytes: jpeg,
                    mime: "image/jpeg",
                    width: image.width(),
                    height: image.height(),
                });
            }
        }
        let longest = image.width().max(image.height());
        if longest <= MIN_SIDE {
            return None;
        }
        let next = (longest * 3 / 4).max(MIN_SIDE);
        let (width, height) = scaled(image.width(), image.height(), next);
        image = resize(image, width, height);
        // Quality 85 already failed at a larger size; start lower.
        qualities = &QUALITIES[1..];
    }
}

fn has_transparency(image: &DynamicImage) -> bool {
    if !image.color().has_alpha() {
        return false;
    }
    match image {
        DynamicImage::ImageLumaA8(pixels) => pixels.pixels().any(|p| p.0[1] < u8::MAX),
        DynamicImage::ImageRgba8(pixels) => pixels.pixels().any(|p| p.0[3] < u8::MAX),
        DynamicImage::ImageLumaA16(pixels) => pixels.pixels().any(|p| p.0[1] < u16::MAX),
        DynamicImage::ImageRgba16(pixels) => pixels.pixels().any(|p| p.0[3] < u16::MAX),
        other => other.to_rgba8().pixels().any(|p| p.0[3] < u8::MAX),
    }
}

fn flatten_on_white(image: &DynamicImage) -> image::RgbImage {
    let rgba = image.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| {
            let (c, a) = (u32::from(c), u32::from(a));
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        image::Rgb([over(r), over(g), over(b)])
    })
}

fn encode_png(image: &DynamicImage) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Adaptive);
    // 16-bit and float pixels go out as 8-bit: this is a preview.
    let written = match image {
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageRgba8(_) => {
            image.write_with_encoder(encoder)
        }
        other if other.color().has_color() => other.to_rgba8().write_with_encoder(encoder),
        other => other.to_luma_alpha8().write_with_encoder(encoder),
    };
    written.ok()?;
    Some(out)
}

fn encode_jpeg(image: &DynamicImage, quality: u8) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let encoder = JpegEncoder::new_with_quality(&mut out, quality);
    image.write_with_encoder(encoder).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

    /// A picture that does not compress to nothing: smooth gradients plus per-pixel noise
    /// from a small xorshift generator (deterministic, no dependency).
    fn busy_rgb(width: u32, height: u32) -> RgbImage {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        RgbImage::from_fn(width, height, |x, y| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 0x3F) as u32;
            let r = (x * 255 / width.max(1) + noise) as u8;
            let g = (y * 255 / height.max(1) + noise / 2) as u8;
            let b = ((x + y) * 127 / (width + height).max(1) + noise) as u8;
            Rgb([r, g, b])
        })
    }

    fn png_bytes(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_with_encoder(PngEncoder::new_with_quality(
                &mut out,
                CompressionType::Fast,
                PngFilter::Adaptive,
            ))
            .expect("encode png");
        out
    }

    fn decode(fitted: &Fitted) -> DynamicImage {
        image::load_from_memory(&fitted.bytes).expect("the output decodes")
    }

    fn assert_within(fitted: &Fitted, budget: &ImageBudget) {
        assert!(
            fitted.bytes.len() <= budget.max_bytes,
            "{} bytes over {}",
            fitted.bytes.len(),
            budget.max_bytes
        );
        assert!(
            fitted.width.max(fitted.height) <= budget.max_side,
            "{fitted:?}"
        );
        let decoded = decode(fitted);
        assert_eq!(
            (decoded.width(), decoded.height()),
            (fitted.width, fitted.height)
        );
    }

    #[test]
    fn large_pngs_come_out_within_the_budget() {
        let budget = ImageBudget::default();
        for side in [2048, 4096] {
            let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(side, side)));
            assert!(png.len() > budget.max_bytes, "the input is meant to be big");
            let fitted = fit(&png, &budget).expect("fits");
            assert_within(&fitted, &budget);
            assert_eq!(fitted.mime, "image/jpeg");
            assert_eq!((fitted.width, fitted.height), (768, 768));
            assert_eq!(
                (fitted.original_width, fitted.original_height),
                (side, side)
            );
            assert_eq!(fitted.original_bytes, png.len());
            assert!(fitted.downscaled());
        }
    }

    #[test]
    fn the_aspect_ratio_is_kept() {
        let budget = ImageBudget::default();
        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(1536, 512)));
        let fitted = fit(&png, &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!((fitted.width, fitted.height), (768, 256));
        assert_eq!(scaled(1000, 3, 768), (768, 2));
        assert_eq!(scaled(5000, 1, 768), (768, 1));
        assert_eq!(scaled(700, 500, 768), (700, 500));
    }

    #[test]
    fn a_small_png_passes_through_unchanged() {
        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(256, 128)));
        let fitted = fit(&png, &ImageBudget::default()).expect("fits");
        assert_eq!(fitted.bytes, png);
        assert_eq!(fitted.mime, "image/png");
        assert_eq!((fitted.width, fitted.height), (256, 128));
        assert!(!fitted.downscaled());
    }

    #[test]
    fn a_small_png_over_the_byte_budget_is_reencoded() {
        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(512, 512)));
        let budget = ImageBudget {
            max_bytes: 64 * 1024,
            ..ImageBudget::default()
        };
        assert!(png.len() > budget.max_bytes);
        let fitted = fit(&png, &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!(fitted.mime, "image/jpeg");
    }

    #[test]
    fn transparency_stays_png_when_it_fits() {
        // A soft disc on a transparent background, shrunk from 1024 to 768.
        let rgba = RgbaImage::from_fn(1024, 1024, |x, y| {
            let (dx, dy) = (x as i64 - 512, y as i64 - 512);
            let inside = dx * dx + dy * dy < 400 * 400;
            Rgba([
                200,
                (x / 8) as u8,
                (y / 8) as u8,
                if inside { 255 } else { 0 },
            ])
        });
        let png = png_bytes(&DynamicImage::ImageRgba8(rgba));
        let budget = ImageBudget::default();
        let fitted = fit(&png, &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!(fitted.mime, "image/png");
        let decoded = decode(&fitted).to_rgba8();
        assert_eq!(
            decoded.get_pixel(0, 0).0[3],
            0,
            "the corner stays transparent"
        );
        assert_eq!(decoded.get_pixel(384, 384).0[3], 255);
    }

    #[test]
    fn an_opaque_alpha_channel_does_not_force_png() {
        let rgba =
            DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(busy_rgb(1024, 1024)).to_rgba8());
        let fitted = fit(&png_bytes(&rgba), &ImageBudget::default()).expect("fits");
        assert_eq!(fitted.mime, "image/jpeg");
    }

    #[test]
    fn transparency_that_does_not_fit_as_png_becomes_a_flattened_jpeg() {
        let mut rgba = DynamicImage::ImageRgb8(busy_rgb(600, 600)).to_rgba8();
        for pixel in rgba.pixels_mut().take(600 * 300) {
            pixel.0[3] = 0;
        }
        let budget = ImageBudget {
            max_bytes: 32 * 1024,
            ..ImageBudget::default()
        };
        let fitted = fit(&png_bytes(&DynamicImage::ImageRgba8(rgba)), &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!(fitted.mime, "image/jpeg");
        let top = decode(&fitted).to_rgb8().get_pixel(fitted.width / 2, 2).0;
        assert!(
            top.iter().all(|&c| c > 240),
            "transparent areas turn white: {top:?}"
        );
    }

    #[test]
    fn jpeg_input_is_passed_or_shrunk() {
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(
                busy_rgb(1600, 1200).as_raw(),
                1600,
                1200,
                image::ExtendedColorType::Rgb8,
            )
            .expect("encode jpeg");
        let budget = ImageBudget::default();
        let fitted = fit(&jpeg, &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!(fitted.mime, "image/jpeg");
        assert_eq!((fitted.width, fitted.height), (768, 576));

        let roomy = ImageBudget {
            max_side: 2048,
            max_bytes: 10 * 1024 * 1024,
            ..budget
        };
        assert_eq!(fit(&jpeg, &roomy).expect("fits").bytes, jpeg);
    }

    #[test]
    fn webp_input_is_reencoded() {
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .write_image(
                busy_rgb(1000, 500).as_raw(),
                1000,
                500,
                image::ExtendedColorType::Rgb8,
            )
            .expect("encode webp");
        let budget = ImageBudget::default();
        let fitted = fit(&webp, &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!(fitted.mime, "image/jpeg");
        assert_eq!((fitted.width, fitted.height), (768, 384));
        // Small and light, but WebP is not passed through: PNG and JPEG are what every
        // client shows.
        let mut small = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut small)
            .write_image(
                busy_rgb(64, 64).as_raw(),
                64,
                64,
                image::ExtendedColorType::Rgb8,
            )
            .expect("encode webp");
        let fitted = fit(&small, &budget).expect("fits");
        assert_eq!(fitted.mime, "image/jpeg");
        assert!(!fitted.downscaled());
    }

    #[test]
    fn gif_input_is_reencoded() {
        let mut gif = Vec::new();
        image::codecs::gif::GifEncoder::new(&mut gif)
            .encode(
                DynamicImage::ImageRgb8(busy_rgb(900, 300))
                    .to_rgba8()
                    .as_raw(),
                900,
                300,
                image::ExtendedColorType::Rgba8,
            )
            .expect("encode gif");
        let fitted = fit(&gif, &ImageBudget::default()).expect("fits");
        assert_eq!((fitted.width, fitted.height), (768, 256));
    }

    #[test]
    fn corrupt_and_foreign_bytes_are_errors_not_panics() {
        let budget = ImageBudget::default();
        let error = fit(b"", &budget).expect_err("empty");
        assert!(matches!(error, ImageError::Unrecognized(_)), "{error}");
        let error = fit(b"%PDF-1.7 not an image", &budget).expect_err("pdf");
        assert!(error.to_string().contains("25 50 44 46"), "{error}");

        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(1024, 1024)));
        let error = fit(&png[..png.len() / 2], &budget).expect_err("truncated");
        assert!(matches!(error, ImageError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("truncated"), "{error}");

        let mut garbled = png.clone();
        for byte in &mut garbled[200..4000] {
            *byte = byte.wrapping_mul(31).wrapping_add(7);
        }
        assert!(fit(&garbled, &budget).is_err());

        for junk in [
            &b"\x89PNG\r\n\x1a\n"[..],
            &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0],
            b"RIFF\0\0\0\0WEBPVP8 ",
            b"GIF89a\x01",
        ] {
            assert!(fit(junk, &budget).is_err(), "{junk:?}");
        }
    }

    /// A PNG whose header claims `width`x`height` followed by a tiny IDAT: what a
    /// decompression bomb looks like before it explodes.
    fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_bomb_header_is_refused_quickly() {
        let budget = ImageBudget::default();
        for (width, height) in [(100_000, 100_000), (16_000, 16_000), (20_000, 10)] {
            let started = std::time::Instant::now();
            let error = fit(&png_header_claiming(width, height), &budget).expect_err("refused");
            assert!(
                started.elapsed() < std::time::Duration::from_millis(500),
                "took {:?}",
                started.elapsed()
            );
            assert!(matches!(error, ImageError::TooLarge { .. }), "{error}");
            let line = error.to_string();
            assert!(line.contains(&format!("{width}x{height} pixels")), "{line}");
            assert!(line.contains("open it by its path"), "{line}");
        }
        // The crafted header itself is well formed: a small claim gets past the limits
        // and fails only for want of pixel data.
        let error = fit(&png_header_claiming(64, 64), &budget).expect_err("no pixels");
        assert!(matches!(error, ImageError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn an_impossible_budget_is_a_clear_error() {
        // Below any real setting (the minimum is 16 KB), to reach the give-up path.
        let budget = ImageBudget {
            max_bytes: 200,
            ..ImageBudget::default()
        };
        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(512, 512)));
        let error = fit(&png, &budget).expect_err("cannot fit");
        assert!(matches!(error, ImageError::OverBudget { .. }), "{error}");
        assert!(
            error.to_string().contains("COMFYUI_AGENT_IMAGE_MAX_KB"),
            "{error}"
        );
    }

    #[test]
    fn the_smallest_setting_is_always_met() {
        let budget = ImageBudget {
            max_side: 64,
            max_bytes: 16 * 1024,
            max_inline: 1,
        };
        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(2000, 1000)));
        let fitted = fit(&png, &budget).expect("fits");
        assert_within(&fitted, &budget);
        assert_eq!((fitted.width, fitted.height), (64, 32));
    }

    #[tokio::test]
    async fn fit_async_runs_off_the_runtime() {
        let png = png_bytes(&DynamicImage::ImageRgb8(busy_rgb(1024, 1024)));
        let fitted = fit_async(png, ImageBudget::default()).await.expect("fits");
        assert_eq!((fitted.width, fitted.height), (768, 768));
        let error = fit_async(b"nope".to_vec(), ImageBudget::default())
            .await
            .expect_err("not an image");
        assert!(matches!(error, ImageError::Unrecognized(_)));
    }
}
