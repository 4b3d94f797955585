//! Mounting in a tower stack (axum, or any `tower::Service`): requests under the Engine.IO
//! path go to the [`Engine`], everything else to the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::Either;

use crate::server::{Body, Engine, Handler};

/// A `tower::Layer` that puts an [`Engine`] in front of a service.
pub struct EngineLayer<H: Handler> {
    engine: Engine<H>,
}

impl<H: Handler> EngineLayer<H> {
    /// A layer serving `engine` under its path.
    pub fn new(engine: Engine<H>) -> Self {
        EngineLayer { engine }
    }
}

impl<H: Handler> Clone for EngineLayer<H> {
    fn clone(&self) -> Self {
        EngineLayer { engine: self.engine.clone() }
    }
}

impl<H: Handler> std::fmt::Debug for EngineLayer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLayer").field("engine", &self.engine).finish()
    }
}

impl<H: Handler, S> tower_layer::Layer<S> for EngineLayer<H> {
    type Service = EngineService<H, S>;
    fn layer(&self, inner: S) -> Self::Service {
        EngineService { engine: self.engine.clone(), inner }
    }
}

/// The service [`EngineLayer`] makes.
pub struct EngineService<H: Handler, S> {
    engine: Engine<H>,
    inner: S,
}

impl<H: Handler, S: Clone> Clone for EngineService<H, S> {
    fn clone(&self) -> Self {
        EngineService { engine: self.engine.clone(), inner: self.inner.clone() }
    }
}

impl<H: Handler, S> std::fmt::Debug for EngineService<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineService").field("engine", &self.engine).finish_non_exhaustive()
    }
}

type BoxFut<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<H, S, B, ResBody> tower_service::Service<Request<B>> for EngineService<H, S>
where
    H: Handler,
    S: tower_service::Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<Either<Body, ResBody>>;
    type Error = S::Error;
    type Future = BoxFut<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.engine.matches(req.uri().path()) {
            let engine = self.engine.clone();
            Box::pin(async move { Ok(engine.handle(req).await.map(Either::Left)) })
        } else {
            let fut = self.inner.call(req);
            Box::pin(async move { fut.await.map(|r| r.map(Either::Right)) })
        }
    }
}
