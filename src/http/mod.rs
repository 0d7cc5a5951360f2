//! The HTTP core: hyper 1.x connections, request limits, body collection, response assembly.
//! Nothing in here touches Python; requests leave through `app::AppQueue`.

pub mod access_log;
pub mod app;
pub mod body;
pub mod conn;
pub mod detect;
pub mod h1_reader;
pub mod proxy;
pub mod request;
pub mod response;
pub mod send_timeout;
pub mod service;
pub mod static_files;
pub mod websocket;
