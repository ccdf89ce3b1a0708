//! MQTT 5.0 re-authentication on a live connection (4.12.1): a client that authenticated
//! with a method at CONNECT sends AUTH 0x19 with the same method; the method runs its
//! exchange again (AUTH 0x18 both ways, bounded in rounds) while traffic goes on, and the
//! broker ends it with AUTH 0x00, or with DISCONNECT and the method's reason code.
//!
//! Front layer: part of the client path.

use std::sync::Arc;

use proto::{reason, Auth, Packet, Properties};

use super::{Client, End};
use crate::auth::{AuthMethod, AuthStep};
use crate::front::rules::MAX_AUTH_ROUNDS;
use crate::show::short;

/// A re-authentication in progress.
pub(super) struct Reauth {
    state: Vec<u8>,
    rounds: usize,
}

impl Client {
    /// An AUTH from the client after CONNACK.
    pub(super) fn on_auth(&mut self, a: Auth) -> Result<(), End> {
        // AUTH without a method at CONNECT, or naming another one: a Protocol Error.
        let method: Arc<dyn AuthMethod> = match &self.auth {
            Some(m) if a.properties.authentication_method.as_deref() == Some(m.name()) => m.clone(),
            _ => return Err(End::Violation(reason::PROTOCOL_ERROR)),
        };
        let data = a.properties.authentication_data.as_deref();
        let step = match (a.reason, self.reauth.as_mut()) {
            (reason::REAUTHENTICATE, None) => {
                let (step, state) = method.start(&self.principal.client_id, data);
                self.reauth = Some(Box::new(Reauth { state, rounds: 0 }));
                step
            }
            (reason::CONTINUE_AUTHENTICATION, Some(r)) => {
                r.rounds += 1;
                if r.rounds >= MAX_AUTH_ROUNDS {
                    AuthStep::Fail(reason::NOT_AUTHORIZED)
                } else {
                    method.step(&mut r.state, data)
                }
            }
            _ => return Err(End::Violation(reason::PROTOCOL_ERROR)),
        };
        let (code, data) = match step {
            AuthStep::Continue(challenge) => (reason::CONTINUE_AUTHENTICATION, Some(challenge)),
            AuthStep::Success(data) => {
                self.reauth = None;
                (reason::SUCCESS, data)
            }
            AuthStep::Fail(code) => {
                tracing::info!(client_id = %short(&self.principal.client_id), code, "re-authentication refused");
                return Err(End::Violation(code));
            }
        };
        let props = Properties {
            authentication_method: Some(method.name().to_owned()),
            authentication_data: data.map(bytes::Bytes::from),
            ..Default::default()
        };
        self.conn.send(&Packet::Auth(Auth { reason: code, properties: props.into() }));
        Ok(())
    }
}
