//! The WSGI (PEP 3333) bridge: builds `environ`, provides `start_response` and
//! `wsgi.file_wrapper`, calls the app and turns its iterable into a response.

pub mod environ;
pub mod file_wrapper;
pub mod handler;
pub mod start_response;
