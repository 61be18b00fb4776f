//! Mirror flips for test-time augmentation: which axes a pass mirrors, and
//! the 2^k subsets of the profile's axes in the engine's order.

use std::fmt;

/// The axes (i, j, k) one pass mirrors. A flip is its own inverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flip(pub [bool; 3]);

impl Flip {
    /// No axis mirrored.
    pub const IDENTITY: Flip = Flip([false; 3]);

    /// Every subset of `axes` (each in 0..3), the identity first: subset `m`
    /// mirrors `axes[b]` for each bit `b` set in `m`, for `m = 0 .. 2^k`.
    pub fn subsets(axes: &[usize]) -> Vec<Flip> {
        (0..1usize << axes.len())
            .map(|m| {
                let mut f = [false; 3];
                for (b, &a) in axes.iter().enumerate() {
                    if let Some(x) = f.get_mut(a).filter(|_| m >> b & 1 == 1) {
                        *x = true;
                    }
                }
                Flip(f)
            })
            .collect()
    }

    /// The source index of position `x` on axis `axis` of an edge `n`.
    #[inline]
    pub(crate) fn index(self, axis: usize, x: usize, n: usize) -> usize {
        if self.0[axis] { n - 1 - x } else { x }
    }
}

impl fmt::Display for Flip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axes: Vec<&str> = ["i", "j", "k"].into_iter().zip(self.0).filter(|(_, on)| *on).map(|(n, _)| n).collect();
        if axes.is_empty() { f.write_str("none") } else { f.write_str(&axes.join("+")) }
    }
}
