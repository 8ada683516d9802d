/**
 * @hybridbus/rabbit-brokered: importing this package registers the `rabbit:`, `amqp:` and
 * `amqps:` schemes with core.
 */
import { registerDriver, type DriverFactory } from '@hybridbus/core/driver';
import { RabbitDriver } from './driver.js';
import { parseRabbitUrl } from './options.js';

export { RabbitDriver } from './driver.js';
export { TopologyError } from './errors.js';
export { parseRabbitUrl, OPTION_NAMES, type RabbitOptions, type BrokerAddress } from './options.js';

export const rabbitDriverFactory: DriverFactory = {
  schemes: ['rabbit', 'amqp', 'amqps'],
  checkUrl: (url) => void parseRabbitUrl(url),
  async create(url, context) {
    const driver = new RabbitDriver(parseRabbitUrl(url), context);
    await driver.started();
    return driver;
  },
};

registerDriver(rabbitDriverFactory);
