export * from './nameservice/index.js';
