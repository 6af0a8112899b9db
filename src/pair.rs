//! Maps keyed by a pair of strings, looked up with borrowed halves: finding `(tenant, id)` in a
//! `HashMap<(String, String), V>` without allocating the two owned strings a tuple key needs.

use std::{
    borrow::Borrow,
    hash::{Hash, Hasher},
};

/// Two strings, owned or borrowed, hashed and compared as the pair `(String, String)` is.
pub(crate) trait Pair {
    fn halves(&self) -> (&str, &str);
}

impl Pair for (String, String) {
    fn halves(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl Pair for (&str, &str) {
    fn halves(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn Pair + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn Pair + 'a) {
        self
    }
}

impl Hash for dyn Pair + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // `(String, String)` hashes its fields in order, each as a `str`: the same here.
        self.halves().hash(state);
    }
}

impl PartialEq for dyn Pair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.halves() == other.halves()
    }
}

impl Eq for dyn Pair + '_ {}

/// The borrowed key to look `(a, b)` up with.
pub(crate) fn key<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    (a, b)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{key, Pair};

    #[test]
    fn borrowed_halves_find_owned_pairs() {
        let mut map: HashMap<(String, String), u32> = HashMap::new();
        map.insert(("acme".into(), "prod".into()), 1);
        map.insert(("acme".into(), "dev".into()), 2);
        map.insert(("acmep".into(), "rod".into()), 3);
        let find = |a, b| map.get(&key(a, b) as &dyn Pair).copied();
        assert_eq!(find("acme", "prod"), Some(1));
        assert_eq!(find("acme", "dev"), Some(2));
        // The split between the halves matters, as it does for the tuple.
        assert_eq!(find("acmep", "rod"), Some(3));
        assert_eq!(find("acm", "eprod"), None);
        assert_eq!(find("other", "prod"), None);
    }
}
