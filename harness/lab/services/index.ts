/** Every lab service; Lab creates each once per lab. One line per protocol module. */
import { apfService } from './apf.ts';
import { echoService } from './echo.ts';
import { mqttService } from './mqtt.ts';
import type { LabServiceFactory } from './types.ts';

export const LAB_SERVICES: LabServiceFactory[] = [echoService, apfService, mqttService];
