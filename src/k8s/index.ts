export { Controllers, type ControllersOptions } from './controller.js';
