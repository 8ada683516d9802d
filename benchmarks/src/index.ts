/** @hybridbus/benchmarks: the `hybridbus bench` engine and the contender interface. */
import './engine/contenders-rabbit.js';
import './engine/contenders-amqp1.js';
import './engine/contenders-moleculer.js';
import './engine/contenders-observed.js';
export { runBench, renderTable, defaultContenders, CPU_COLUMN_NOTE, DEFAULTS, QUICK, TINY, DEFAULT_RABBIT_URL, type BenchOptions } from './engine/run.js';
export { SCALE_DEFAULTS } from './scale/run.js';
export { parsePayload, type PayloadOption } from './engine/payload.js';
export { registerContender, BASELINE_OF, type RegisteredOptions } from './engine/contenders.js';
export { SCENARIOS, type Contender, type Scenario, type ClientSpec, type ServerSpec, type ProcessCommand } from './engine/contender.js';
export { renderHtml, writeReportFiles } from './report/html.js';
export type * from './report/types.js';
