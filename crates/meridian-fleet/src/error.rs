//! The fleet's errors: a bad configuration, a port that cannot be bound, a name it does not
//! simulate, a value out of range. HTTP handlers map each to a status with `status_code`.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("invalid fleet config: {}", problems.join("; "))]
    InvalidConfig { problems: Vec<String> },

    #[error("failed to bind the fleet to {addr}: {source}; pick another port or pass 0 for a free one")]
    Bind { addr: SocketAddr, source: std::io::Error },

    #[error("the fleet server failed: {source}")]
    Server { source: std::io::Error },

    #[error("unknown region {region:?}; the fleet simulates {known}")]
    UnknownRegion { region: String, known: String },

    #[error("unknown service {service:?} in region {region:?}; the fleet simulates {known}")]
    UnknownService { region: String, service: String, known: String },

    #[error("error ratio must be a number between 0 and 1, got {ratio}")]
    InvalidErrorRatio { ratio: f64 },

    #[error("missing or wrong bearer token; send `Authorization: Bearer <token>`")]
    Unauthorized,
}

impl FleetError {
    /// The HTTP status this error answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            FleetError::UnknownRegion { .. } | FleetError::UnknownService { .. } => 404,
            FleetError::InvalidConfig { .. } | FleetError::InvalidErrorRatio { .. } => 400,
            FleetError::Unauthorized => 401,
            FleetError::Bind { .. } | FleetError::Server { .. } => 500,
        }
    }
}
