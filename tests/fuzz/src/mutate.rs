//! The bounded pass: each seed as it is, then a fixed number of inputs made from the seeds by a
//! small deterministic byte mutator (xorshift64*), so a CI run is the same every time and a
//! failure names the iteration and the input that broke the promise.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::Target;

/// A xorshift64* generator: deterministic for a seed, and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced, as xorshift needs a nonzero state).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that sit on boundaries the decoders check.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// Largest input the mutator makes.
pub const MAX_LEN: usize = 16 << 10;

/// One mutation of `input` (a splice takes bytes from `other`).
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.next_u64() as u8;
        }
        2 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(32));
            input.drain(i..i + n);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            let copy = input[i..i + n].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, copy);
        }
        5 if len > 0 => {
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1, 2, 4, 8][rng.below(4)];
            let i = rng.below(len);
            let end = (i + width).min(len);
            input[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
        }
        6 if !other.is_empty() => {
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(256));
            let at = rng.below(len + 1);
            let end = (at + n).min(len);
            input.splice(at..end, other[from..from + n].iter().copied());
        }
        _ if len > 0 => {
            let i = rng.below(len);
            let delta = 1 + rng.below(35) as u8;
            input[i] = if rng.next_u64() & 1 == 0 {
                input[i].wrapping_add(delta)
            } else {
                input[i].wrapping_sub(delta)
            };
        }
        _ => input.push(rng.next_u64() as u8),
    }
    input.truncate(MAX_LEN);
}

/// What a bounded pass ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Inputs run (seeds included).
    pub executions: u64,
}

/// Runs `target` on every seed, then on `iterations` mutated inputs drawn from `rng_seed`; a
/// panic is re-raised after printing the target, iteration and input (hex), to be kept as a
/// regression input.
pub fn bounded_pass(
    name: &str,
    target: Target,
    seeds: &[Vec<u8>],
    iterations: u64,
    rng_seed: u64,
) -> PassReport {
    let run_one = |what: &str, data: &[u8]| {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(data))) {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!(
                "fuzz target {name}: {what} failed; input ({} bytes): {hex}",
                data.len()
            );
            resume_unwind(panic);
        }
    };
    let mut executions = 0;
    for (i, s) in seeds.iter().enumerate() {
        run_one(&format!("seed {i}"), s);
        executions += 1;
    }
    let mut rng = Rng::new(rng_seed);
    let empty = Vec::new();
    for it in 0..iterations {
        let base = if seeds.is_empty() {
            &empty
        } else {
            &seeds[rng.below(seeds.len())]
        };
        let other = if seeds.is_empty() {
            &empty
        } else {
            &seeds[rng.below(seeds.len())]
        };
        let mut input = base.clone();
        for _ in 0..1 + rng.below(8) {
            mutate(&mut rng, &mut input, other);
        }
        run_one(&format!("iteration {it}"), &input);
        executions += 1;
    }
    PassReport { executions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let make = |seed| {
            let mut rng = Rng::new(seed);
            let mut v = b"HELLO a 1".to_vec();
            for _ in 0..100 {
                mutate(&mut rng, &mut v, b"CHANNELS 1:2");
            }
            v
        };
        assert_eq!(make(7), make(7));
        assert_ne!(make(7), make(8));
    }

    #[test]
    fn a_broken_promise_is_reported_not_swallowed() {
        fn picky(data: &[u8]) {
            assert!(!data.contains(&b'!'), "a bang");
        }
        let r = catch_unwind(|| bounded_pass("picky", picky, &[b"ok!".to_vec()], 0, 1));
        assert!(r.is_err());
        let ok = bounded_pass("picky", picky, &[b"ok".to_vec()], 0, 1);
        assert_eq!(ok.executions, 1);
    }
}
