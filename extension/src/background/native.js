/**
 * The native host, reached on demand. The client object holds only the live connection
 * (pending requests die with their port); a new worker makes a new one.
 */
import { NATIVE_HOST_NAME } from '../config.js';
import { NativeClient } from '../lib/nativeClient.js';
import { api } from '../shared/settings.js';

let client = null;

/**
 * The native client (made on first use).
 * @returns {NativeClient}
 */
export function native() {
  if (!client) {
    client = new NativeClient({
      connect: () => api.runtime.connectNative(NATIVE_HOST_NAME),
      onEvent: (event) => {
        if (event.type === 'disconnected') console.info('LowKey native host:', event.error.message);
      },
    });
  }
  return client;
}
