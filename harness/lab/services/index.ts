/** Every lab service; Lab creates each once per lab. One line per protocol module. */
import { amqpService } from './amqp.ts';
import { apfService } from './apf.ts';
import { echoService } from './echo.ts';
import { mqttService } from './mqtt.ts';
import type { LabServiceFactory } from './types.ts';
import { wsSessionService } from './ws-session.ts';

// ws-session comes before echo: the lab picks the first service whose path prefix matches, and
// echo's `/ws` is a prefix of ws-session's `/ws/`.
export const LAB_SERVICES: LabServiceFactory[] = [
  wsSessionService,
  echoService,
  amqpService,
  mqttService,
  apfService,
];
