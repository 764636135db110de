//! The seeded hasher of the engine's id maps.

use std::hash::{BuildHasher, Hasher};

/// A seeded multiply-fold hasher for integer ids (fast, and seeded per
/// process so ids chosen by an attacker cannot be aimed at one bucket).
#[derive(Clone, Copy)]
pub(crate) struct IdHasher(u64);

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a).wrapping_mul(u128::from(b));
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        // Ids are hashed in blocks of 64: the block number is mixed with the
        // seed, the position in the block passes through. Ids allocated close
        // together (sequential or time-based, as TigerBeetle recommends) so
        // share cache lines of the table, while without the seed nobody can
        // aim ids of different blocks at one bucket. The position also goes
        // into the top bits, which the table uses as a per-slot tag.
        let block = fold_mul((n >> 6) ^ self.0, MUL);
        let pos = n & 0x3F;
        self.0 = (block & !0x3F) ^ pos ^ (pos << 58);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s with a per-process random seed.
#[derive(Clone, Copy)]
pub(crate) struct IdHasherBuilder(u64);

impl Default for IdHasherBuilder {
    fn default() -> Self {
        IdHasherBuilder(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1)
    }
}

impl BuildHasher for IdHasherBuilder {
    type Hasher = IdHasher;
    #[inline]
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}
