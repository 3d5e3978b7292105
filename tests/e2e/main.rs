//! End-to-end tests: the relay on random loopback ports between scriptable receivers, driven by
//! real SMTP clients. One binary; each file is one concern.

mod cli;
mod corpus;
mod crash;
mod delivery;
mod flow;
mod limits;
mod mx;
mod policy;
mod reverse_dns;
mod siem;
mod smuggling;
mod tdc;
mod tls;
