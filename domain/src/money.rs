//! Money: integer minor units of an ISO 4217 currency, and the platform fee split.
//!
//! No floating point anywhere: amounts are `i64` minor units (cents, yen, …), arithmetic is
//! checked (overflow is an error, never a wrap), and the fee is computed in `i128` and rounded
//! down so that rounding always favours the freelancer and `fee + net = gross` exactly.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Basis points in a whole: 10 000 bps = 100 %.
pub const BPS_PER_WHOLE: u32 = 10_000;

/// The largest amount a command may carry, in minor units: 10^13 (100 000 000 000.00 in a
/// two-decimal currency; `shared/DOMAIN.md`). Larger amounts are refused where they enter, so
/// every sum the domain forms of them (a bid of 20 milestones, a held balance) fits in an `i64`
/// with room to spare; sums that grow with the number of events (earnings, daily volumes) are
/// kept by the read models as `numeric`.
pub const MAX_AMOUNT: i64 = 10_000_000_000_000;

/// Why a money operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The result does not fit in an `i64` of minor units.
    #[error("the amount is too large")]
    Overflow,
    /// The two amounts are in different currencies.
    #[error("cannot combine amounts in {left} and {right}")]
    CurrencyMismatch {
        /// The left-hand currency.
        left: Currency,
        /// The right-hand currency.
        right: Currency,
    },
    /// The code is not in the currency table.
    #[error("{0:?} is not a supported ISO 4217 currency code")]
    UnknownCurrency(String),
    /// A fee rate above 100 %.
    #[error("a fee rate cannot exceed 10000 basis points (100 %), got {0}")]
    FeeRateTooHigh(u32),
    /// A fee cannot be taken from a negative amount (its rounding would favour the platform).
    #[error("a fee cannot be taken from a negative amount")]
    NegativeAmount,
}

/// A validated ISO 4217 currency with its minor-unit exponent.
///
/// Only codes in the table are constructible, so holding a `Currency` proves it is supported.
/// Serialised as its three-letter upper-case code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// US dollar (2).
    pub const USD: Self = Self::of("USD", 2);
    /// Euro (2).
    pub const EUR: Self = Self::of("EUR", 2);
    /// Pound sterling (2).
    pub const GBP: Self = Self::of("GBP", 2);
    /// Indian rupee (2).
    pub const INR: Self = Self::of("INR", 2);
    /// Japanese yen (0).
    pub const JPY: Self = Self::of("JPY", 0);
    /// Canadian dollar (2).
    pub const CAD: Self = Self::of("CAD", 2);
    /// Australian dollar (2).
    pub const AUD: Self = Self::of("AUD", 2);
    /// Swiss franc (2).
    pub const CHF: Self = Self::of("CHF", 2);
    /// Swedish krona (2).
    pub const SEK: Self = Self::of("SEK", 2);
    /// Norwegian krone (2).
    pub const NOK: Self = Self::of("NOK", 2);
    /// Danish krone (2).
    pub const DKK: Self = Self::of("DKK", 2);
    /// Polish złoty (2).
    pub const PLN: Self = Self::of("PLN", 2);
    /// Brazilian real (2).
    pub const BRL: Self = Self::of("BRL", 2);
    /// Mexican peso (2).
    pub const MXN: Self = Self::of("MXN", 2);
    /// Singapore dollar (2).
    pub const SGD: Self = Self::of("SGD", 2);
    /// Hong Kong dollar (2).
    pub const HKD: Self = Self::of("HKD", 2);
    /// New Zealand dollar (2).
    pub const NZD: Self = Self::of("NZD", 2);
    /// South African rand (2).
    pub const ZAR: Self = Self::of("ZAR", 2);
    /// South Korean won (0).
    pub const KRW: Self = Self::of("KRW", 0);
    /// Chinese yuan (2).
    pub const CNY: Self = Self::of("CNY", 2);
    /// Kuwaiti dinar (3).
    pub const KWD: Self = Self::of("KWD", 3);

    const fn of(code: &'static str, exponent: u8) -> Self {
        Self { code, exponent }
    }

    /// Every supported currency.
    pub const ALL: &'static [Self] = &[
        Self::USD,
        Self::EUR,
        Self::GBP,
        Self::INR,
        Self::JPY,
        Self::CAD,
        Self::AUD,
        Self::CHF,
        Self::SEK,
        Self::NOK,
        Self::DKK,
        Self::PLN,
        Self::BRL,
        Self::MXN,
        Self::SGD,
        Self::HKD,
        Self::NZD,
        Self::ZAR,
        Self::KRW,
        Self::CNY,
        Self::KWD,
        Self::of("AED", 2),
        Self::of("ARS", 2),
        Self::of("BDT", 2),
        Self::of("BHD", 3),
        Self::of("CLP", 0),
        Self::of("COP", 2),
        Self::of("CZK", 2),
        Self::of("EGP", 2),
        Self::of("HUF", 2),
        Self::of("IDR", 2),
        Self::of("ILS", 2),
        Self::of("ISK", 0),
        Self::of("JOD", 3),
        Self::of("KES", 2),
        Self::of("MYR", 2),
        Self::of("NGN", 2),
        Self::of("OMR", 3),
        Self::of("PHP", 2),
        Self::of("PKR", 2),
        Self::of("RON", 2),
        Self::of("SAR", 2),
        Self::of("THB", 2),
        Self::of("TND", 3),
        Self::of("TRY", 2),
        Self::of("TWD", 2),
        Self::of("UAH", 2),
        Self::of("UGX", 0),
        Self::of("VND", 0),
    ];

    /// Parses a code case-insensitively (`"usd"` → `USD`); unknown codes are refused.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        Self::ALL
            .iter()
            .find(|currency| currency.code.eq_ignore_ascii_case(code))
            .copied()
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// The upper-case ISO 4217 code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        self.code
    }

    /// How many decimal digits the minor unit has (USD 2, JPY 0, KWD 3).
    #[must_use]
    pub const fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An ISO 4217 code: a string of three capital letters (lower case is accepted and upper-cased).
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Za-z]{3}$"))
            .description(Some("ISO 4217 currency code, e.g. USD"))
            .examples(["USD"])
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in minor units, e.g. `{ "amount": 1234, "currency": "USD" }` is $12.34.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY).
    pub amount: i64,
    /// The currency the amount is in.
    pub currency: Currency,
}

impl Money {
    /// `amount` minor units of `currency`.
    #[must_use]
    pub const fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Nothing, in `currency`.
    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// Whether the amount is greater than zero.
    #[must_use]
    pub const fn is_positive(&self) -> bool {
        self.amount > 0
    }

    /// Whether the amount is above [`MAX_AMOUNT`], the most a command may carry.
    #[must_use]
    pub const fn exceeds_maximum(&self) -> bool {
        self.amount > MAX_AMOUNT
    }

    /// Whether the amount is below zero.
    #[must_use]
    pub const fn is_negative(&self) -> bool {
        self.amount < 0
    }

    /// `self + other`, refusing mixed currencies and overflow.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.amount
            .checked_add(other.amount)
            .map(|amount| Self::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`, refusing mixed currencies and overflow.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.amount
            .checked_sub(other.amount)
            .map(|amount| Self::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// Splits this gross amount into the platform fee at `bps` basis points and the
    /// freelancer's net: `fee = floor(gross × bps / 10 000)`, `net = gross − fee`.
    ///
    /// The product is formed in `i128`, so no gross amount can overflow it, and rounding down
    /// means the freelancer never loses a minor unit to rounding.
    pub fn split_fee(&self, bps: u32) -> Result<FeeSplit, MoneyError> {
        if bps > BPS_PER_WHOLE {
            return Err(MoneyError::FeeRateTooHigh(bps));
        }
        if self.is_negative() {
            return Err(MoneyError::NegativeAmount);
        }
        let fee = i128::from(self.amount) * i128::from(bps) / i128::from(BPS_PER_WHOLE);
        let fee = i64::try_from(fee).map_err(|_| MoneyError::Overflow)?;
        let fee = Self::new(fee, self.currency);
        let net = self.checked_sub(fee)?;
        Ok(FeeSplit {
            gross: *self,
            fee,
            net,
        })
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    /// `12.34 USD`, `1234 JPY`: for messages a person reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_negative() { "-" } else { "" };
        let magnitude = self.amount.unsigned_abs();
        let digits = self.currency.exponent();
        match 10_u64.checked_pow(u32::from(digits)) {
            Some(scale) if digits > 0 => write!(
                f,
                "{sign}{}.{:0width$} {}",
                magnitude / scale,
                magnitude % scale,
                self.currency,
                width = usize::from(digits)
            ),
            _ => write!(f, "{sign}{magnitude} {}", self.currency),
        }
    }
}

/// A gross amount divided between the platform and the freelancer; `fee + net = gross` always.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSplit {
    /// The whole amount released.
    pub gross: Money,
    /// The platform's share.
    pub fee: Money,
    /// The freelancer's share.
    pub net: Money,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_currency_code_is_parsed_case_insensitively_into_upper_case() {
        assert_eq!(Currency::parse("usd"), Ok(Currency::USD));
        assert_eq!(Currency::parse("Jpy").map(|c| c.code()), Ok("JPY"));
        assert_eq!(Currency::parse("EUR").map(|c| c.exponent()), Ok(2));
    }

    #[test]
    fn an_unknown_currency_code_is_refused() {
        assert_eq!(
            Currency::parse("XYZ"),
            Err(MoneyError::UnknownCurrency("XYZ".to_owned()))
        );
        assert!(Currency::parse("").is_err());
        assert!(Currency::parse("US").is_err());
    }

    #[test]
    fn the_currency_table_has_the_expected_exponents_and_no_duplicates() {
        assert_eq!(Currency::JPY.exponent(), 0);
        assert_eq!(Currency::KRW.exponent(), 0);
        assert_eq!(Currency::KWD.exponent(), 3);
        for currency in Currency::ALL {
            assert_eq!(currency.code().len(), 3);
            assert!(currency.code().chars().all(|c| c.is_ascii_uppercase()));
            let same = Currency::ALL
                .iter()
                .filter(|other| other.code() == currency.code())
                .count();
            assert_eq!(same, 1, "{currency} is listed twice");
        }
    }

    #[test]
    fn money_serialises_as_integer_minor_units_and_a_code() {
        let money = Money::new(1234, Currency::USD);
        let json = serde_json::to_value(money).ok();
        assert_eq!(
            json,
            Some(serde_json::json!({ "amount": 1234, "currency": "USD" }))
        );
        let back: Result<Money, _> =
            serde_json::from_value(serde_json::json!({ "amount": 5, "currency": "eur" }));
        assert_eq!(back.ok(), Some(Money::new(5, Currency::EUR)));
    }

    #[test]
    fn deserialising_an_unknown_currency_fails() {
        let parsed: Result<Money, _> =
            serde_json::from_value(serde_json::json!({ "amount": 5, "currency": "ABC" }));
        assert!(parsed.is_err());
    }

    #[test]
    fn a_fractional_amount_is_refused_when_deserialising() {
        let parsed: Result<Money, _> =
            serde_json::from_value(serde_json::json!({ "amount": 1.5, "currency": "USD" }));
        assert!(parsed.is_err());
    }

    #[test]
    fn addition_that_overflows_is_an_error_not_a_wrap() {
        let max = Money::new(i64::MAX, Currency::USD);
        assert_eq!(
            max.checked_add(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
        let min = Money::new(i64::MIN, Currency::USD);
        assert_eq!(
            min.checked_sub(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn amounts_in_different_currencies_cannot_be_combined() {
        assert_eq!(
            Money::new(1, Currency::USD).checked_add(Money::new(1, Currency::EUR)),
            Err(MoneyError::CurrencyMismatch {
                left: Currency::USD,
                right: Currency::EUR
            })
        );
        assert!(Money::new(1, Currency::USD)
            .checked_sub(Money::new(1, Currency::GBP))
            .is_err());
    }

    #[test]
    fn the_maximum_amount_is_ten_to_the_thirteen_minor_units() {
        assert_eq!(MAX_AMOUNT, 10_i64.pow(13));
        assert!(!Money::new(MAX_AMOUNT, Currency::USD).exceeds_maximum());
        assert!(Money::new(MAX_AMOUNT + 1, Currency::USD).exceeds_maximum());
        assert!(!Money::new(-1, Currency::USD).exceeds_maximum());
    }

    #[test]
    fn the_fee_is_rounded_down_so_rounding_favours_the_freelancer() {
        let split = Money::new(999, Currency::USD).split_fee(1_000);
        assert_eq!(
            split,
            Ok(FeeSplit {
                gross: Money::new(999, Currency::USD),
                fee: Money::new(99, Currency::USD),
                net: Money::new(900, Currency::USD),
            })
        );
    }

    #[test]
    fn fee_split_examples() {
        let fee_of = |amount: i64, bps: u32| {
            Money::new(amount, Currency::USD)
                .split_fee(bps)
                .map(|split| (split.fee.amount, split.net.amount))
        };
        assert_eq!(fee_of(10_000, 1_000), Ok((1_000, 9_000)));
        assert_eq!(fee_of(1, 9_999), Ok((0, 1)));
        assert_eq!(fee_of(0, 1_000), Ok((0, 0)));
        assert_eq!(fee_of(12_345, 0), Ok((0, 12_345)));
        assert_eq!(fee_of(12_345, 10_000), Ok((12_345, 0)));
        assert_eq!(
            fee_of(i64::MAX, 1_000),
            Ok((922_337_203_685_477_580, 8_301_034_833_169_298_227))
        );
    }

    #[test]
    fn a_fee_rate_above_100_percent_is_refused() {
        assert_eq!(
            Money::new(100, Currency::USD).split_fee(10_001),
            Err(MoneyError::FeeRateTooHigh(10_001))
        );
    }

    #[test]
    fn no_fee_is_taken_from_a_negative_amount() {
        assert_eq!(
            Money::new(-100, Currency::USD).split_fee(1_000),
            Err(MoneyError::NegativeAmount)
        );
    }

    #[test]
    fn money_displays_with_its_minor_unit_digits() {
        assert_eq!(Money::new(1234, Currency::USD).to_string(), "12.34 USD");
        assert_eq!(Money::new(-5, Currency::EUR).to_string(), "-0.05 EUR");
        assert_eq!(Money::new(1234, Currency::JPY).to_string(), "1234 JPY");
        assert_eq!(Money::new(1, Currency::KWD).to_string(), "0.001 KWD");
        assert_eq!(
            Money::new(i64::MIN, Currency::USD).to_string(),
            "-92233720368547758.08 USD"
        );
    }

    proptest! {
        #[test]
        fn a_fee_split_always_adds_up_and_never_exceeds_the_gross(
            gross in 0..=i64::MAX,
            bps in 0..=BPS_PER_WHOLE,
        ) {
            let split = Money::new(gross, Currency::EUR).split_fee(bps);
            prop_assert!(split.is_ok());
            if let Ok(split) = split {
                prop_assert_eq!(split.fee.checked_add(split.net), Ok(split.gross));
                prop_assert!(split.fee.amount >= 0);
                prop_assert!(split.fee.amount <= gross);
                prop_assert_eq!(split.net.currency, Currency::EUR);
            }
        }
    }
}
