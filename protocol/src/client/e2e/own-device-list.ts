/**
 * The user's own device list as one of their devices maintains it (E2E.md section 2.1): adding this
 * device to the list once it holds the identity key (after a restore from backup), and picking up a
 * newer list another own device published.
 */
import * as e2e from '../../crypto/e2e/index.ts'
import type { SignedDeviceList } from '../../schema/keys.ts'
import type { HttpApi } from '../http.ts'
import { BackupError } from './key-backup.ts'

/**
 * Makes sure `device` is in the user's signed device list (E2E.md section 2.1, "New own device"): the
 * served list must verify under `uik` (else `identity_mismatch`: the backup belongs to an older
 * identity; no list at all is `untrusted_backup`); if the device is missing, signs and publishes the next list (version + 1, chained to the
 * served one, every existing device kept, this one added). Returns the list that now holds the device.
 */
export async function addOwnDevice(
  api: HttpApi,
  uik: e2e.SigningKeyPair,
  userId: string,
  device: e2e.DeviceListDevice,
): Promise<SignedDeviceList> {
  const served = (await api.queryKeys([userId])).device_lists[userId]
  // The device that created the identity published a list: none now means the server withholds it,
  // and a version 1 list of this device alone would drop every other device.
  if (served === undefined) throw new BackupError('untrusted_backup', 'the server shows no device list')
  let current: e2e.VerifiedDeviceList
  try {
    current = e2e.verifyDeviceList(served, { userId, uik: uik.publicKey })
  } catch (error) {
    throw new BackupError(
      'identity_mismatch',
      `the published device list is not signed by the backed-up identity key (${e2e.isE2eError(error) ? error.code : 'invalid'})`,
    )
  }
  const listed = current.devices.find((d) => d.deviceId === device.deviceId)
  if (
    listed &&
    e2e.constantTimeEqual(listed.dsk, device.dsk) &&
    e2e.constantTimeEqual(listed.dxk, device.dxk)
  )
    return wire(current.document)
  const kept = current.devices.filter((d) => d.deviceId !== device.deviceId)
  const next = wire(e2e.signDeviceList(uik, userId, [...kept, device], current.document))
  await api.publishDeviceList(next)
  return next
}

/**
 * A newer own device list than `current`, if `served` is one: signed by the user's `uik` and of a
 * higher version. Null for the same or an older list; throws the crypto core's error for a list that
 * does not verify (the caller warns).
 */
export function newerOwnDeviceList(
  userId: string,
  uik: Uint8Array,
  current: SignedDeviceList | null,
  served: SignedDeviceList,
): e2e.VerifiedDeviceList | null {
  const list = e2e.verifyDeviceList(served, { userId, uik })
  return current !== null && list.version <= current.version ? null : list
}

/** The crypto core's device list as the wire schema types it (the same JSON; its arrays are readonly). */
function wire(list: e2e.SignedDeviceList): SignedDeviceList {
  return { ...list, devices: list.devices.map((d) => ({ ...d })) }
}
