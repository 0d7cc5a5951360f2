//! The HTTP core: hyper 1.x connections, request limits, body collection, response assembly.
//! Nothing in here touches Python; requests leave through `app::AppQueue`.

pub mod access_log;
pub mod app;
pub mod body;
pub mod compress;
pub mod conn;
pub mod detect;
pub mod h1_reader;
pub mod proxy;
pub mod proxy_protocol;
pub mod rate_limit;
pub mod request;
pub mod request_timeout;
pub mod response;
pub mod send_timeout;
pub mod service;
pub mod static_files;
pub mod websocket;
pub mod ws_deflate;

/// `AsyncWrite` for a connection wrapper that only looks at what it reads (`detect::Rewind`,
/// `h1_reader::Watched`): every write goes straight to its `inner`.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                data: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;
