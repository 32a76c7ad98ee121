//! Words for people: counts with the right plural ("1 account", "2 accounts").

/// `n` and the noun, singular for exactly one.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(super::count(1u32, "account", "accounts"), "1 account");
        assert_eq!(super::count(0u32, "account", "accounts"), "0 accounts");
        assert_eq!(super::count(2u64, "entry", "entries"), "2 entries");
    }
}
