/**
 * @hybridbus/rabbit-brokered: importing this package registers the `rabbit:` scheme with core
 * (TLS with `ssl=true`, as oslo's rabbit driver). As in oslo, `amqp://` and `amqps://` are the
 * AMQP 1.0 driver's (@hybridbus/amqp1), not RabbitMQ's 0-9-1.
 */
import { registerDriver, type DriverFactory } from '@hybridbus/core/driver';
import { RabbitDriver } from './driver.js';
import { parseRabbitUrl } from './options.js';

export { RabbitDriver } from './driver.js';
export { TopologyError } from './errors.js';
export { parseRabbitUrl, OPTION_NAMES, type RabbitOptions, type BrokerAddress } from './options.js';

export const rabbitDriverFactory: DriverFactory = {
  schemes: ['rabbit'],
  checkUrl: (url) => void parseRabbitUrl(url),
  async create(url, context) {
    const driver = new RabbitDriver(parseRabbitUrl(url), context);
    await driver.started();
    return driver;
  },
};

registerDriver(rabbitDriverFactory);
