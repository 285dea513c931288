//! Balancing policies for new sessions, over the ready backends of a farm.

use crate::backend::{BackendSlot, Farm};
use crate::config::BalancingPolicy;

/// Picks a ready backend not in `exclude`, or `None` when there is none.
pub fn pick_ready(
    farm: &Farm,
    policy: BalancingPolicy,
    path: &str,
    tick: u64,
    exclude: &[usize],
    sessions_of: &dyn Fn(BackendSlot) -> u64,
) -> Option<usize> {
    let eligible = |i: &usize| farm.backends[*i].is_ready() && !exclude.contains(i);
    let indices = || (0..farm.backends.len()).filter(eligible);
    match policy {
        BalancingPolicy::RoundRobin => {
            let total: u64 = indices().map(|i| u64::from(farm.backends[i].weight)).sum();
            if total == 0 {
                return None;
            }
            let mut point = tick % total;
            indices().find(|&i| {
                let weight = u64::from(farm.backends[i].weight);
                if point < weight {
                    true
                } else {
                    point -= weight;
                    false
                }
            })
        }
        BalancingPolicy::LeastSessions => {
            // Fewest sessions per unit of weight; ties broken by rotating with the tick
            // so equal backends share the load instead of the first one taking all.
            let count = indices().count() as u64;
            indices()
                .enumerate()
                .min_by(|&(ra, a), &(rb, b)| {
                    let load_a = u128::from(sessions_of(farm.backends[a].slot))
                        * u128::from(farm.backends[b].weight);
                    let load_b = u128::from(sessions_of(farm.backends[b].slot))
                        * u128::from(farm.backends[a].weight);
                    let rank = |r: usize| (r as u64 + count - tick % count.max(1)) % count.max(1);
                    load_a.cmp(&load_b).then(rank(ra).cmp(&rank(rb)))
                })
                .map(|(_, i)| i)
        }
        BalancingPolicy::UrlHash => {
            // Weighted rendezvous hashing: stable per path, and only the paths of a
            // backend that leaves move elsewhere. Hashes by id, not slot, so every
            // replica agrees.
            let path_hash = fnv1a(path.as_bytes(), FNV_OFFSET);
            indices().max_by(|&a, &b| {
                score(path_hash, &farm.backends[a].id, farm.backends[a].weight)
                    .total_cmp(&score(
                        path_hash,
                        &farm.backends[b].id,
                        farm.backends[b].weight,
                    ))
                    .then(b.cmp(&a))
            })
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
pub fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn score(path_hash: u64, id: &str, weight: u32) -> f64 {
    let mixed = splitmix(fnv1a(id.as_bytes(), path_hash));
    // Map to (0, 1): never 0, so ln() is finite.
    let unit = ((mixed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / unit.ln()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
