/** `protocol`: the agent's application protocol completes inside the tunnel. */
import { type CheckDefinition, ROUTE } from './types.ts';

export const protocol: CheckDefinition = {
  id: 'protocol',
  title: 'Application protocol completes',
  dependsOn: [ROUTE, 'connect-response', 'tls-interception', 'pinning'],
  blocks: 'the application protocol did not complete',
  explain: (c) =>
    `The agent's application protocol to ${c.host}:${c.port} completes inside the tunnel (WebSocket upgrade, MQTT CONNACK, AMQP header exchange, as the agent speaks it).`,
  remediation: (c) =>
    `Something between the agent and ${c.host} breaks the protocol handshake: allow WebSocket upgrades and do not inspect or rewrite this tunnel.`,
};
