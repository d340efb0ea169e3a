//! What a password must be: enrollment accounts (`fleetca account add --password-stdin`,
//! issue 13) and operator users (`fleetca admin user add`, `POST /api/v1/users`). Generated passwords
//! (the default: 18 random bytes) always pass.
//!
//! A password is weak when it has fewer than 12 characters; or fewer than 20 characters
//! and fewer than three of the classes lower-case, upper-case, digit, other; or fewer than
//! 8 different characters; or it contains the account name (4 characters or more, any
//! case); or it contains a control character. Long passphrases of plain words pass.

/// Why `password` is too weak for the account or user `account`, or `None`.
pub fn weakness(password: &str, account: &str) -> Option<&'static str> {
    let chars: Vec<char> = password.chars().collect();
    if chars.iter().any(|c| c.is_control()) {
        return Some("it contains a control character");
    }
    if chars.len() < 12 {
        return Some("it has fewer than 12 characters");
    }
    let classes = [
        chars.iter().any(|c| c.is_lowercase()),
        chars.iter().any(|c| c.is_uppercase()),
        chars.iter().any(|c| c.is_ascii_digit()),
        chars.iter().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chars.len() < 20 && classes < 3 {
        return Some("under 20 characters it needs three of: lower-case, upper-case, digits, other characters");
    }
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Some("it has fewer than 8 different characters");
    }
    if account.chars().count() >= 4 && password.to_lowercase().contains(&account.to_lowercase()) {
        return Some("it contains the account name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_named_and_strong_ones_pass() {
        for (p, why) in [
            ("short1A!", "fewer than 12"),
            ("alllowercaseletters", "three of"),
            ("Aa1Aa1Aa1Aa1", "8 different"),
            ("Factory-2026-Secret", "account name"),
            ("tab\there-Is-A-Long-One", "control"),
        ] {
            let got = weakness(p, "factory");
            assert!(got.is_some_and(|w| w.contains(why)), "{p}: {got:?}");
        }
        for p in ["correct horse battery", "Tr0ub4dor&3x!", "kW8-vQ2p#Lm9"] {
            assert_eq!(weakness(p, "factory"), None, "{p}");
        }
    }
}
