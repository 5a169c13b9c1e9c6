//! Money: integer minor units with a currency, never floats, and the one
//! rounding rule a percent discount follows, Stripe's.

use std::fmt;

/// An amount in a currency's minor units (cents), e.g. 1900 USD is $19.00.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Money {
    pub amount: i64,
    /// ISO 4217, lower case as Stripe writes it.
    pub currency: String,
}

/// Currencies without minor units (Stripe's list).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof",
    "xpf",
];

impl Money {
    pub fn new(amount: i64, currency: &str) -> Money {
        Money {
            amount,
            currency: currency.to_ascii_lowercase(),
        }
    }

    /// The amount after `percent` off, rounded as Stripe rounds a percent
    /// coupon: the discount to the nearest minor unit, halves away from zero.
    pub fn less_percent(&self, percent: u32) -> Money {
        let discount = (i128::from(self.amount) * i128::from(percent) * 2 + 100) / 200;
        Money {
            amount: self.amount - i64::try_from(discount).unwrap_or(self.amount),
            currency: self.currency.clone(),
        }
    }
}

/// `19.00 USD`, `2,900 JPY`: digits first, so that no symbol is guessed wrong.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.currency.to_ascii_uppercase();
        let sign = if self.amount < 0 { "-" } else { "" };
        let amount = self.amount.unsigned_abs();
        let group = |whole: u64| {
            let digits = whole.to_string();
            let mut grouped = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            grouped
        };
        if ZERO_DECIMAL.contains(&self.currency.as_str()) {
            write!(f, "{sign}{} {code}", group(amount))
        } else {
            write!(f, "{sign}{}.{:02} {code}", group(amount / 100), amount % 100)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_read_as_people_write_them() {
        assert_eq!(Money::new(1900, "usd").to_string(), "19.00 USD");
        assert_eq!(Money::new(123_456_789, "EUR").to_string(), "1,234,567.89 EUR");
        assert_eq!(Money::new(5, "usd").to_string(), "0.05 USD");
        assert_eq!(Money::new(2900, "jpy").to_string(), "2,900 JPY");
    }

    #[test]
    fn percent_discounts_round_as_stripe_does() {
        assert_eq!(Money::new(1900, "usd").less_percent(50).amount, 950);
        assert_eq!(Money::new(1999, "usd").less_percent(50).amount, 999); // 999.5 off rounds to 1000
        assert_eq!(Money::new(1900, "usd").less_percent(25).amount, 1425);
        assert_eq!(Money::new(19000, "usd").less_percent(40).amount, 11400);
        assert_eq!(Money::new(333, "usd").less_percent(25).amount, 250); // 83.25 off rounds to 83
    }

    proptest! {
        #[test]
        fn a_discount_never_makes_money_or_goes_below_zero(amount in 0i64..10_000_000, percent in 0u32..=100) {
            let after = Money::new(amount, "usd").less_percent(percent).amount;
            prop_assert!((0..=amount).contains(&after));
            // The discount is the exact percent, rounded half away from zero.
            let exact = amount as f64 * f64::from(percent) / 100.0;
            prop_assert!(((amount - after) as f64 - exact).abs() <= 0.5);
        }
    }
}
