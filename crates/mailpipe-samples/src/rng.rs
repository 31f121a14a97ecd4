//! A small seeded random generator (SplitMix64) and the id formats ESPs use.
//!
//! Written here rather than taken from `rand`: sample traffic must be the same for the same
//! `--seed` across builds and dependency upgrades, and `rand`'s generators do not promise
//! stable output across versions. SplitMix64 is tiny, fast and statistically good enough
//! for fake data; nothing here is cryptographic. It is the workspace's one seeded generator:
//! the kill tests' schedules (`mailpipe-test-support`) and the normalize parsers' robustness
//! test use it too.

/// SplitMix64 (Steele, Lea, Flood 2014), as used to seed xoshiro.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const CROCKFORD32: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for `label`: the same (seed, label) always gives the same one.
    pub fn fork(&mut self, label: u64) -> Rng {
        Rng(self.next_u64() ^ label.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is irrelevant for fake data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `range` (not empty).
    pub fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.below(range.end - range.start)
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    /// One of `items` (not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }

    fn chars(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| char::from(self.pick(alphabet))).collect()
    }

    /// Lower-case hex of `len` digits.
    pub fn hex(&mut self, len: usize) -> String {
        self.chars(b"0123456789abcdef", len)
    }

    /// Upper-case hex of `len` digits.
    pub fn hex_upper(&mut self, len: usize) -> String {
        self.chars(b"0123456789ABCDEF", len)
    }

    pub fn base62(&mut self, len: usize) -> String {
        self.chars(BASE62, len)
    }

    pub fn base64url(&mut self, len: usize) -> String {
        self.chars(BASE64URL, len)
    }

    /// Crockford base32, as in ULIDs.
    pub fn base32(&mut self, len: usize) -> String {
        self.chars(CROCKFORD32, len)
    }

    /// Decimal digits, the first one not zero.
    pub fn digits(&mut self, len: usize) -> String {
        let first = char::from(b'1' + self.below(9) as u8);
        std::iter::once(first)
            .chain(self.chars(b"0123456789", len.saturating_sub(1)).chars())
            .collect()
    }

    /// A random (version 4) UUID, lower-case.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0x0FFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }

    /// `count` random bytes.
    pub fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let (mut fa, mut fb) = (a.fork(1), b.fork(2));
        assert_ne!(fa.next_u64(), fb.next_u64());
        // The first output of SplitMix64 seeded with 0 (reference value).
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn formats() {
        let mut rng = Rng::new(1);
        let uuid = rng.uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
        assert!(!rng.digits(17).starts_with('0'));
        assert!(rng.between(3, 5) >= 3);
        let mut items = [1, 2, 3, 4];
        rng.shuffle(&mut items);
        items.sort();
        assert_eq!(items, [1, 2, 3, 4]);
    }
}
