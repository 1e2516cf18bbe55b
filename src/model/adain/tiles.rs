//! Tiled encoding and decoding, so large images run in bounded memory with the untiled result.
//!
//! The network is convolutional with a bounded receptive field, so each output region only
//! depends on inputs nearby. Tiles cover the image (or the relu4_1 map) in blocks aligned to
//! the pooling grid (multiples of 8 pixels), each run with a margin of [`MARGIN`] relu4_1
//! positions (64 pixels) on every side that is then dropped: the receptive field radius is
//! ≈ 30 pixels for the decoder and ≈ 40 for the encoder, so no reflection padding at a tile
//! edge reaches the kept part, and the stitched result equals the untiled one up to float
//! summation order. The AdaIN statistics are computed on the whole relu4_1 map, which is small
//! (512 × H/8 × W/8).

use candle::{Tensor, D};

use super::AdaIn;
use crate::Result;

/// Margin around each tile, in relu4_1 positions (×8 pixels).
pub const MARGIN: usize = 8;

/// Default tile size in relu4_1 positions: 1024×1024-pixel tiles; images up to 1088 pixels a
/// side run untiled (no margin overhead), larger ones in bounded memory.
pub const DEFAULT_TILE: usize = 128;

/// Splits `n` positions into blocks of at most `block`: (start, end) pairs.
fn blocks(n: usize, block: usize) -> Vec<(usize, usize)> {
    let block = block.max(1);
    (0..n.div_ceil(block))
        .map(|i| (i * block, ((i + 1) * block).min(n)))
        .collect()
}

impl AdaIn {
    /// relu4_1 features computed tile by tile (tiles of `tile`×`tile` relu4_1 positions).
    ///
    /// `image`: (1, 3, H, W) → (1, 512, ⌈H/8⌉, ⌈W/8⌉), equal to [`Self::encode`] within float
    /// summation order.
    pub fn encode_tiled(&self, image: &Tensor, tile: usize) -> Result<Tensor> {
        let (_, _, h, w) = image.dims4()?;
        let (fh, fw) = (h.div_ceil(8), w.div_ceil(8));
        if fh <= tile + MARGIN && fw <= tile + MARGIN {
            return self.encode_whole(image);
        }
        let mut rows = Vec::new();
        for (fy0, fy1) in blocks(fh, tile) {
            let mut cols = Vec::new();
            for (fx0, fx1) in blocks(fw, tile) {
                // The crop in pixels (starts on the pooling grid), margin clipped at the edges.
                let (cy0, cx0) = (fy0.saturating_sub(MARGIN), fx0.saturating_sub(MARGIN));
                let (cy1, cx1) = (((fy1 + MARGIN) * 8).min(h), ((fx1 + MARGIN) * 8).min(w));
                let crop =
                    image
                        .narrow(2, cy0 * 8, cy1 - cy0 * 8)?
                        .narrow(3, cx0 * 8, cx1 - cx0 * 8)?;
                let f = self.encode_whole(&crop.contiguous()?)?;
                cols.push(
                    f.narrow(2, fy0 - cy0, fy1 - fy0)?
                        .narrow(3, fx0 - cx0, fx1 - fx0)?,
                );
            }
            rows.push(Tensor::cat(&cols, D::Minus1)?);
        }
        Ok(Tensor::cat(&rows, 2)?)
    }

    /// [`Self::decode`] tile by tile: `t` (1, 512, h, w) → (1, 3, height, width), equal to the
    /// untiled result within float summation order.
    pub fn decode_tiled(
        &self,
        t: &Tensor,
        (height, width): (usize, usize),
        tile: usize,
    ) -> Result<Tensor> {
        let (_, _, fh, fw) = t.dims4()?;
        if height > 8 * fh || width > 8 * fw {
            return Err(crate::Error::input(
                "AdaIN",
                format!(
                    "cannot crop a {}×{} output to {width}×{height}",
                    8 * fw,
                    8 * fh
                ),
            ));
        }
        if fh <= tile + MARGIN && fw <= tile + MARGIN {
            return self.decode_whole(t, (height, width));
        }
        let mut rows = Vec::new();
        for (fy0, fy1) in blocks(fh, tile) {
            let mut cols = Vec::new();
            for (fx0, fx1) in blocks(fw, tile) {
                let (cy0, cx0) = (fy0.saturating_sub(MARGIN), fx0.saturating_sub(MARGIN));
                let (cy1, cx1) = ((fy1 + MARGIN).min(fh), (fx1 + MARGIN).min(fw));
                let crop = t
                    .narrow(2, cy0, cy1 - cy0)?
                    .narrow(3, cx0, cx1 - cx0)?
                    .contiguous()?;
                let y = self.decoder.forward(&crop)?;
                cols.push(y.narrow(2, (fy0 - cy0) * 8, (fy1 - fy0) * 8)?.narrow(
                    3,
                    (fx0 - cx0) * 8,
                    (fx1 - fx0) * 8,
                )?);
            }
            rows.push(Tensor::cat(&cols, D::Minus1)?);
        }
        let y = Tensor::cat(&rows, 2)?;
        Ok(y.narrow(2, 0, height)?.narrow(3, 0, width)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_range() {
        assert_eq!(blocks(10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(blocks(3, 8), vec![(0, 3)]);
    }
}
