//! Errors building a routing policy.

/// A threshold that cannot be a bound.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoutingError {
    #[error("routing threshold {field} from the {origin} is not a finite number: {value}")]
    NotFinite { field: &'static str, origin: &'static str, value: f64 },
    #[error("routing threshold {field} from the {origin} is {value}, outside {range}")]
    OutOfRange { field: &'static str, origin: &'static str, value: f64, range: &'static str },
}
