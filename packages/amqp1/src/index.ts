/**
 * @hybridbus/amqp1: importing this package registers `amqp:` and `amqps:` (oslo's AMQP 1.0
 * driver's schemes; `rabbit://` is AMQP 0-9-1) and the alias `amqp1:` with core.
 */
import { registerDriver, type DriverFactory } from '@hybridbus/core/driver';
import { Amqp1Driver } from './driver.js';
import { parseAmqp1Url } from './options.js';

export { Amqp1Driver, AMQP1_CAPABILITIES } from './driver.js';
export type { Amqp1Kind } from './env.js';
export { parseAmqp1Url, OPTION_NAMES, type Amqp1Options, type Amqp1Mode, type AddressingMode } from './options.js';

export const amqp1DriverFactory: DriverFactory = {
  schemes: ['amqp', 'amqps', 'amqp1'],
  checkUrl: (url) => void parseAmqp1Url(url),
  async create(url, context) {
    const driver = new Amqp1Driver(parseAmqp1Url(url), context);
    await driver.started();
    return driver;
  },
};

registerDriver(amqp1DriverFactory);
