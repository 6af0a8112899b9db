//! The vendor connector, minus the per-response connection info: hyper's TCP connector tags
//! each connection with its addresses, and the client then copies them into every response's
//! extensions (three allocations per call) for nobody to read.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures::TryFutureExt;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Wraps a connector; its connections report no extra info.
#[derive(Clone)]
pub(super) struct Quiet<C>(pub C);

impl<C> tower::Service<http::Uri> for Quiet<C>
where
    C: tower::Service<http::Uri>,
{
    type Response = QuietIo<C::Response>;
    type Error = C::Error;
    type Future = futures::future::MapOk<C::Future, fn(C::Response) -> QuietIo<C::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        self.0.call(uri).map_ok(QuietIo as fn(_) -> _)
    }
}

/// A connection as it is, but for what it reports: only whether it is proxied or HTTP/2.
pub(super) struct QuietIo<T>(T);

impl<T: Connection> Connection for QuietIo<T> {
    fn connected(&self) -> Connected {
        let inner = self.0.connected();
        let quiet = Connected::new().proxy(inner.is_proxied());
        if inner.is_negotiated_h2() {
            quiet.negotiated_h2()
        } else {
            quiet
        }
    }
}

impl<T: Read + Unpin> Read for QuietIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for QuietIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::client::legacy::connect::{Connection, HttpConnector, HttpInfo};
    use tower::ServiceExt;

    use super::Quiet;

    #[tokio::test]
    async fn connections_carry_no_addresses_into_responses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: http::Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let plain = HttpConnector::new().oneshot(uri.clone()).await.unwrap();
        let mut extensions = http::Extensions::new();
        plain.connected().get_extras(&mut extensions);
        assert!(
            extensions.get::<HttpInfo>().is_some(),
            "the unwrapped connector tags"
        );

        let quiet = Quiet(HttpConnector::new()).oneshot(uri).await.unwrap();
        let connected = quiet.connected();
        let mut extensions = http::Extensions::new();
        connected.get_extras(&mut extensions);
        assert!(extensions.get::<HttpInfo>().is_none());
        assert!(!connected.is_proxied() && !connected.is_negotiated_h2());
    }
}
