'use strict';
/**
 * Artillery engine `proxycheck`: each virtual user is one endpoint agent of a proxycheck profile
 * (FlexxAgent's reports, Analyzer uploads, remote-assistance tunnels held with keep-alives) going
 * through the forward proxy in `config.target`, for `seconds` real seconds. The agent is proxycheck's
 * own (`proxycheck/load`); Artillery scales it out (locally, or on its cloud runners).
 *
 *   config:
 *     target: http://proxy.example:3128        # the proxy (user:pass@ for Basic auth)
 *     engines:
 *       proxycheck:
 *         ca: [lab-root.pem]                     # what the agents trust
 *         timeScale: 1                           # profile seconds x timeScale = real seconds
 *         clientCert: device.crt                 # vPro CIRA: the device certificate and key
 *         clientKey: device.key
 *         module: /path/to/dist/load/api.js      # optional: another proxycheck build
 *   scenarios:
 *     - engine: proxycheck
 *       profile: remote-assistance
 *       seconds: 60
 *
 * Metrics: histograms `proxycheck.<phase>` (tcp, connect, tls, firstByte, upload, keepalive; ms),
 * counters `proxycheck.<count>` (sessions, requests, keepalives, reconnects, drops), and errors by
 * class (`connect 403`, `tls`, `tunnel dropped`, ...). A virtual user with any error fails.
 */
const path = require('node:path');
const { pathToFileURL } = require('node:url');

class ProxycheckEngine {
  constructor(script, ee, helpers) {
    this.script = script;
    this.ee = ee;
    this.helpers = helpers;
    this.config = (script.config.engines && script.config.engines.proxycheck) || {};
    // relative paths are taken from where `artillery run` runs
    const base = process.cwd();
    this.caFiles = [].concat(this.config.ca || []).map((f) => path.resolve(base, f));
    this.clientCertFiles =
      this.config.clientCert && this.config.clientKey
        ? { cert: path.resolve(base, this.config.clientCert), key: path.resolve(base, this.config.clientKey) }
        : undefined;
    const mod = this.config.module ? pathToFileURL(path.resolve(base, this.config.module)).href : 'proxycheck/load';
    this.api = undefined;
    this.load = () => {
      if (!this.api) this.api = import(mod);
      return this.api;
    };
  }

  createScenario(spec, ee) {
    const target = this.script.config.target;
    return (context, callback) => {
      ee.emit('started');
      if (!target) return callback(new Error('proxycheck engine: config.target (the proxy URL) is not set'), context);
      if (!spec.profile) return callback(new Error('proxycheck engine: the scenario names no profile'), context);
      this.load()
        .then((api) =>
          api.runAgent({
            proxy: target,
            profile: spec.profile,
            seconds: Number(spec.seconds || 30),
            caFiles: this.caFiles,
            clientCertFiles: this.clientCertFiles,
            timeScale: Number(this.config.timeScale || 1),
            tenant: this.config.tenant,
            onPhase: (phase, ms) => ee.emit('histogram', `proxycheck.${phase}`, ms),
            onCount: (name, n) => ee.emit('counter', `proxycheck.${name}`, n),
            onError: (errorClass) => ee.emit('error', errorClass),
          }),
        )
        .then(
          (errors) => callback(errors ? new Error(`${errors} errors`) : null, context),
          (err) => {
            ee.emit('error', err.message);
            callback(err, context);
          },
        );
    };
  }
}

module.exports = ProxycheckEngine;
