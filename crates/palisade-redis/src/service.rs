//! The scaffolding every fleet-wide layer shares, written once: the layer makes a service
//! that holds the inner service and the layer's `Arc<Shared>`.

/// For `$layer` (a struct with a `shared: Arc<Shared>` field, `Shared` having a `name`):
/// its `Layer` impl and the service `$service<S>` it makes, with `Clone`, `Debug`,
/// `get_ref`, `get_mut` and `into_inner`. The `Service` impl is each pattern's own.
macro_rules! fleet_service {
    ($(#[$doc:meta])* $layer:ident => $service:ident) => {
        impl<S> tower_layer::Layer<S> for $layer {
            type Service = $service<S>;

            fn layer(&self, inner: S) -> $service<S> {
                $service { inner, shared: self.shared.clone() }
            }
        }

        $(#[$doc])*
        #[derive(Clone)]
        pub struct $service<S> {
            inner: S,
            shared: std::sync::Arc<Shared>,
        }

        impl<S> std::fmt::Debug for $service<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($service)).field("name", &self.shared.name).finish_non_exhaustive()
            }
        }

        impl<S> $service<S> {
            /// The inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The inner service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// The inner service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

pub(crate) use fleet_service;
