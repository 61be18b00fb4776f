//! 6-connected flood fills on a 3-D grid: the largest connected component
//! (`scipy.ndimage.label` with its default structure,
//! `generate_binary_structure(3, 1)`) and hole filling
//! (`scipy.ndimage.binary_fill_holes`, whose default structure is also
//! 6-connected: a background voxel stays background only if a 6-connected
//! background path joins it to the grid's border).

/// A Fortran-ordered grid: `(i, j, k)` at `i + nx * (j + ny * k)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    nx: usize,
    ny: usize,
    nz: usize,
}

/// A voxel on the flood stack: its coordinates travel with it so that finding
/// neighbours needs no division.
type Voxel = (usize, usize, usize);

impl Grid {
    pub(crate) fn new(dims: [usize; 3]) -> Grid {
        Grid { nx: dims[0], ny: dims[1], nz: dims[2] }
    }

    fn len(&self) -> usize {
        self.nx * self.ny * self.nz
    }

    #[inline]
    fn index(&self, (i, j, k): Voxel) -> usize {
        i + self.nx * (j + self.ny * k)
    }

    /// Calls `f` with each in-grid 6-neighbour of `v`.
    #[inline]
    fn for_each_neighbour(&self, (i, j, k): Voxel, mut f: impl FnMut(Voxel)) {
        if i > 0 {
            f((i - 1, j, k));
        }
        if i + 1 < self.nx {
            f((i + 1, j, k));
        }
        if j > 0 {
            f((i, j - 1, k));
        }
        if j + 1 < self.ny {
            f((i, j + 1, k));
        }
        if k > 0 {
            f((i, j, k - 1));
        }
        if k + 1 < self.nz {
            f((i, j, k + 1));
        }
    }

    /// Every voxel, in Fortran order.
    fn voxels(&self) -> impl Iterator<Item = Voxel> + '_ {
        (0..self.nz).flat_map(move |k| (0..self.ny).flat_map(move |j| (0..self.nx).map(move |i| (i, j, k))))
    }

    fn on_border(&self, (i, j, k): Voxel) -> bool {
        i == 0 || j == 0 || k == 0 || i + 1 == self.nx || j + 1 == self.ny || k + 1 == self.nz
    }
}

/// Marks every voxel 6-connected to a seed through voxels where `passable` is
/// true; `seen` must start false and ends true exactly on the reached voxels.
/// Returns the number of voxels reached.
fn flood(grid: Grid, passable: &[bool], seen: &mut [bool], seeds: impl Iterator<Item = Voxel>) -> usize {
    let mut stack: Vec<Voxel> = Vec::new();
    let mut reached = 0;
    let mut visit = |v: Voxel, stack: &mut Vec<Voxel>| {
        let idx = grid.index(v);
        if passable.get(idx) == Some(&true) && seen.get(idx) == Some(&false) {
            seen[idx] = true;
            stack.push(v);
        }
    };
    for s in seeds {
        visit(s, &mut stack);
        while let Some(v) = stack.pop() {
            reached += 1;
            grid.for_each_neighbour(v, |n| visit(n, &mut stack));
        }
    }
    reached
}

/// The largest 6-connected component of `fg` (`None` when `fg` is empty). Ties
/// go to the component met first in Fortran order; scipy numbers components in
/// C order, so the two can only differ on exactly equal sizes.
pub(crate) fn largest_component(grid: Grid, fg: &[bool]) -> Option<Vec<bool>> {
    let mut seen = vec![false; grid.len()];
    let mut best: Option<(usize, Voxel)> = None;
    for (idx, v) in grid.voxels().enumerate() {
        if fg.get(idx) == Some(&true) && seen.get(idx) == Some(&false) {
            let size = flood(grid, fg, &mut seen, std::iter::once(v));
            if best.is_none_or(|(s, _)| size > s) {
                best = Some((size, v));
            }
        }
    }
    let (_, seed) = best?;
    let mut keep = vec![false; grid.len()];
    flood(grid, fg, &mut keep, std::iter::once(seed));
    Some(keep)
}

/// Fills every background region that no 6-connected background path joins to
/// the border, in place.
pub(crate) fn fill_holes(grid: Grid, mask: &mut [bool]) {
    let background: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let mut outside = vec![false; grid.len()];
    flood(grid, &background, &mut outside, grid.voxels().filter(|&v| grid.on_border(v)));
    mask.iter_mut().zip(outside).for_each(|(m, o)| *m = !o);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_from(dims: [usize; 3], ones: &[(usize, usize, usize)]) -> (Grid, Vec<bool>) {
        let g = Grid::new(dims);
        let mut v = vec![false; g.len()];
        for &(i, j, k) in ones {
            v[i + dims[0] * (j + dims[1] * k)] = true;
        }
        (g, v)
    }

    #[test]
    fn diagonal_neighbours_are_separate_components() {
        // (0,0,0)-(1,0,0) is one 2-voxel component; (2,1,0) touches it only diagonally.
        let (g, fg) = grid_from([3, 3, 3], &[(0, 0, 0), (1, 0, 0), (2, 1, 0), (2, 2, 2)]);
        let keep = largest_component(g, &fg).expect("non-empty");
        assert_eq!(keep.iter().filter(|&&b| b).count(), 2);
        assert!(keep[0] && keep[1] && !keep[2 + 3]);
        assert!(largest_component(g, &[false; 27]).is_none());
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
        let (g, mut m) = grid_from([5, 5, 5], &ones);
        let centre = 2 + 5 * (2 + 5 * 2);
        fill_holes(g, &mut m);
        assert!(m[centre]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 27);

        // Open one face: the centre now reaches the border.
        let ones: Vec<_> = ones.into_iter().filter(|&p| p != (2, 2, 1)).collect();
        let (g, mut m) = grid_from([5, 5, 5], &ones);
        fill_holes(g, &mut m);
        assert!(!m[centre]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 25);
    }
}
