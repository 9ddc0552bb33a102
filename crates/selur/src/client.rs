//! The API client is `selur-client`'s; the CLI uses it as is.

pub use selur_client::{status_error, Client, ClientError};
