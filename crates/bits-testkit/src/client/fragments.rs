//! How long the next fragment is: fixed or seeded-random sizes, capped by what 413
//! answers have taught (spec §6: "the client then retries with smaller fragments").

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Chooses fragment lengths.
#[derive(Debug)]
pub(crate) struct FragmentSizer {
    size: Size,
    /// Ceiling learnt from 413 answers; kept for the rest of the upload, restarts
    /// included, since the server's limit does not change with the session.
    cap: Option<u64>,
    min: u64,
}

#[derive(Debug)]
enum Size {
    Fixed(u64),
    Random {
        rng: Box<StdRng>,
        min: u64,
        max: u64,
    },
}

/// A 413 came back for a fragment already at the minimum size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtMinimum;

impl FragmentSizer {
    /// `random`: `(min, max, seed)`; bounds are ordered and clamped to at least 1.
    pub fn new(
        fragment_size: u64,
        min_fragment_size: u64,
        random: Option<(u64, u64, u64)>,
    ) -> Self {
        let size = match random {
            Some((a, b, seed)) => Size::Random {
                rng: Box::new(StdRng::seed_from_u64(seed)),
                min: a.min(b).max(1),
                max: a.max(b).max(1),
            },
            None => Size::Fixed(fragment_size.max(1)),
        };
        FragmentSizer {
            size,
            cap: None,
            min: min_fragment_size.max(1),
        }
    }

    /// Length of the next fragment when `remaining` bytes are left (`remaining > 0`).
    pub fn next_len(&mut self, remaining: u64) -> u64 {
        let wanted = match &mut self.size {
            Size::Fixed(size) => *size,
            Size::Random { rng, min, max } => rng.gen_range(*min..=*max),
        };
        wanted
            .min(self.cap.unwrap_or(u64::MAX))
            .min(remaining)
            .max(1)
    }

    /// A fragment of `refused` bytes got 413: halve it, not below the minimum.
    /// Returns the new ceiling.
    pub fn shrink(&mut self, refused: u64) -> Result<u64, AtMinimum> {
        if refused <= self.min {
            return Err(AtMinimum);
        }
        let cap = (refused / 2).max(self.min);
        self.cap = Some(cap);
        Ok(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes_end_with_the_remainder() {
        let mut sizer = FragmentSizer::new(100, 10, None);
        assert_eq!(sizer.next_len(250), 100);
        assert_eq!(sizer.next_len(50), 50);
    }

    #[test]
    fn shrinking_halves_down_to_the_minimum_then_refuses() {
        let mut sizer = FragmentSizer::new(100, 30, None);
        assert_eq!(sizer.shrink(100), Ok(50));
        assert_eq!(sizer.next_len(1000), 50);
        assert_eq!(sizer.shrink(50), Ok(30));
        assert_eq!(sizer.shrink(30), Err(AtMinimum));
    }

    #[test]
    fn random_sizes_stay_in_bounds_and_repeat_with_the_seed() {
        let draw = |seed| {
            let mut sizer = FragmentSizer::new(0, 1, Some((7, 3, seed)));
            (0..200)
                .map(|_| sizer.next_len(u64::MAX))
                .collect::<Vec<_>>()
        };
        let sizes = draw(42);
        assert!(sizes.iter().all(|s| (3..=7).contains(s)));
        assert!(sizes.contains(&3) && sizes.contains(&7));
        assert_eq!(sizes, draw(42));
        assert_ne!(sizes, draw(43));
    }

    #[test]
    fn a_shrink_caps_random_sizes_too() {
        let mut sizer = FragmentSizer::new(0, 1, Some((100, 200, 1)));
        sizer.shrink(150).unwrap();
        assert!((0..50).all(|_| sizer.next_len(u64::MAX) == 75));
    }
}
