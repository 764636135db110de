//! Rendering a ride code as a QR code: terminal text, SVG and PNG.
//!
//! The QR code carries the binary payload in byte mode at error-correction
//! level M (the `qrcode` crate builds the matrix; the `png` crate writes PNG).

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

use crate::codes::RideCode;
use crate::error::TransitError;

const QUIET_ZONE: usize = 4;

/// The QR matrix of a code.
pub fn matrix(code: &RideCode) -> Result<QrCode, TransitError> {
    QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M)
        .map_err(|e| TransitError::Render(e.to_string()))
}

/// The QR code as text for a terminal (two modules per character row).
pub fn to_terminal(code: &RideCode) -> Result<String, TransitError> {
    Ok(matrix(code)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .build())
}

/// The QR code as an SVG document.
pub fn to_svg(code: &RideCode) -> Result<String, TransitError> {
    Ok(matrix(code)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .build())
}

/// The QR code as a grayscale PNG, `scale` pixels per module (1 to 32), with a 4-module quiet zone.
pub fn to_png(code: &RideCode, scale: u32) -> Result<Vec<u8>, TransitError> {
    if !(1..=32).contains(&scale) {
        return Err(TransitError::Render(
            "scale must be 1 to 32 pixels per module".into(),
        ));
    }
    let qr = matrix(code)?;
    let modules = qr.width();
    let colors = qr.to_colors();
    let scale = scale as usize;
    let side = (modules + 2 * QUIET_ZONE) * scale;
    let mut pixels = vec![255u8; side * side];
    for y in 0..modules {
        for x in 0..modules {
            if colors.get(y * modules + x) == Some(&qrcode::Color::Dark) {
                for dy in 0..scale {
                    let row = ((y + QUIET_ZONE) * scale + dy) * side;
                    let start = row + (x + QUIET_ZONE) * scale;
                    if let Some(px) = pixels.get_mut(start..start + scale) {
                        px.fill(0);
                    }
                }
            }
        }
    }
    let side32 = u32::try_from(side).map_err(|_| TransitError::Render("image too large".into()))?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side32, side32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| TransitError::Render(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| TransitError::Render(e.to_string()))?;
    }
    Ok(out)
}
