//! 6-connected flood fills on a 3-D grid: the largest connected component
//! (`scipy.ndimage.label` with its default structure,
//! `generate_binary_structure(3, 1)`) and hole filling
//! (`scipy.ndimage.binary_fill_holes`, whose default structure is also
//! 6-connected: a background voxel stays background only if a 6-connected
//! background path joins it to the grid's border).

/// A Fortran-ordered grid padded by one voxel on every side: in the padded
/// array a voxel's six neighbours are at fixed offsets (±1, ±row, ±plane), and
/// the padding is the border that hole filling floods in from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    dims: [usize; 3],
    row: usize,
    plane: usize,
    len: usize,
}

/// Voxel states in the padded array.
const OUTSIDE: u8 = 0; // padding or not foreground
const FOREGROUND: u8 = 1; // above threshold, not yet visited
const VISITED: u8 = 2; // above threshold, in some component
const KEPT: u8 = 3; // in the largest component
const REACHED: u8 = 4; // background joined to the border

impl Grid {
    /// `None` when the padded size overflows.
    pub(crate) fn new(dims: [usize; 3]) -> Option<Grid> {
        let [px, py, pz] = [dims[0].checked_add(2)?, dims[1].checked_add(2)?, dims[2].checked_add(2)?];
        let plane = px.checked_mul(py)?;
        Some(Grid { dims, row: px, plane, len: plane.checked_mul(pz)? })
    }

    /// The padded state array: `FOREGROUND` where `fg` is true, `OUTSIDE` elsewhere.
    fn pad(&self, fg: &[bool]) -> Vec<u8> {
        let [nx, ny, nz] = self.dims;
        let mut state = vec![OUTSIDE; self.len];
        for (k, slab) in fg.chunks_exact(nx * ny).enumerate().take(nz) {
            for (j, line) in slab.chunks_exact(nx).enumerate() {
                let at = 1 + self.row * (j + 1) + self.plane * (k + 1);
                if let Some(dst) = state.get_mut(at..at + nx) {
                    dst.iter_mut().zip(line).for_each(|(d, &f)| *d = if f { FOREGROUND } else { OUTSIDE });
                }
            }
        }
        state
    }

    /// The interior of the padded array, back in the unpadded Fortran order.
    fn unpad(&self, state: &[u8], inside: impl Fn(u8) -> bool) -> Vec<bool> {
        let [nx, ny, nz] = self.dims;
        let mut out = Vec::with_capacity(nx * ny * nz);
        for k in 0..nz {
            for j in 0..ny {
                let at = 1 + self.row * (j + 1) + self.plane * (k + 1);
                out.extend(state.get(at..at + nx).unwrap_or(&[]).iter().map(|&s| inside(s)));
            }
        }
        out
    }

    /// Turns every voxel 6-connected to `seed` through `from`-state voxels into
    /// `to`; returns how many. Offsets that leave the array are skipped; ones that
    /// wrap around a row or plane only ever join padding to padding.
    fn flood(&self, state: &mut [u8], seed: usize, from: impl Fn(u8) -> bool, to: u8, stack: &mut Vec<usize>) -> usize {
        let offsets = [1, self.row, self.plane];
        let mut count = 0;
        match state.get_mut(seed) {
            Some(s) if from(*s) => *s = to,
            _ => return 0,
        }
        stack.push(seed);
        while let Some(v) = stack.pop() {
            count += 1;
            for off in offsets {
                for n in [v.wrapping_sub(off), v + off] {
                    if let Some(s) = state.get_mut(n)
                        && from(*s)
                    {
                        *s = to;
                        stack.push(n);
                    }
                }
            }
        }
        count
    }
}

/// The largest 6-connected component of `fg`, holes filled
/// (`scipy.ndimage.binary_fill_holes` of the `scipy.ndimage.label` component with
/// the most voxels); `None` when `fg` is empty. Ties go to the component met
/// first in Fortran order; scipy numbers components in C order, so the two can
/// only differ on exactly equal sizes.
pub(crate) fn filled_largest_component(grid: Grid, fg: &[bool]) -> Option<Vec<bool>> {
    let mut state = grid.pad(fg);
    let mut stack = Vec::new();
    let mut best: Option<(usize, usize)> = None; // (size, seed)
    for seed in 0..state.len() {
        if state.get(seed) == Some(&FOREGROUND) {
            let size = grid.flood(&mut state, seed, |s| s == FOREGROUND, VISITED, &mut stack);
            if best.is_none_or(|(s, _)| size > s) {
                best = Some((size, seed));
            }
        }
    }
    let (_, seed) = best?;
    grid.flood(&mut state, seed, |s| s == VISITED, KEPT, &mut stack);
    // Padded index 0 is a padding corner: background joined to every border voxel.
    grid.flood(&mut state, 0, |s| s < KEPT, REACHED, &mut stack);
    Some(grid.unpad(&state, |s| s != REACHED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_from(dims: [usize; 3], ones: &[(usize, usize, usize)]) -> (Grid, Vec<bool>) {
        let g = Grid::new(dims).expect("small grid");
        let mut v = vec![false; dims.iter().product()];
        for &(i, j, k) in ones {
            v[i + dims[0] * (j + dims[1] * k)] = true;
        }
        (g, v)
    }

    #[test]
    fn diagonal_neighbours_are_separate_components() {
        // (0,0,0)-(1,0,0) is one 2-voxel component; (2,1,0) touches it only diagonally.
        let (g, fg) = grid_from([3, 3, 3], &[(0, 0, 0), (1, 0, 0), (2, 1, 0), (2, 2, 2)]);
        let keep = filled_largest_component(g, &fg).expect("non-empty");
        assert_eq!(keep.iter().filter(|&&b| b).count(), 2);
        assert!(keep[0] && keep[1] && !keep[2 + 3]);
        assert!(filled_largest_component(g, &[false; 27]).is_none());
    }

    #[test]
    fn enclosed_cavity_is_filled_but_a_tunnel_to_the_border_is_not() {
        // A 3x3x3 shell in a 5x5x5 grid encloses its centre.
        let mut ones = Vec::new();
        for k in 1..4 {
            for j in 1..4 {
                for i in 1..4 {
                    if (i, j, k) != (2, 2, 2) {
                        ones.push((i, j, k));
                    }
                }
            }
        }
        let (g, m) = grid_from([5, 5, 5], &ones);
        let centre = 2 + 5 * (2 + 5 * 2);
        let m = filled_largest_component(g, &m).expect("non-empty");
        assert!(m[centre]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 27);

        // Open one face: the centre now reaches the border.
        let ones: Vec<_> = ones.into_iter().filter(|&p| p != (2, 2, 1)).collect();
        let (g, m) = grid_from([5, 5, 5], &ones);
        let m = filled_largest_component(g, &m).expect("non-empty");
        assert!(!m[centre]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 25);
    }
}
