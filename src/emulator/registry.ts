/**
 * Tenants, data cores, flow types and event types, with the exact JSON shapes of protocol §3.2-3.4. Every creation is
 * reported as a compact `ResourceLine` so the journal can persist it and a restart rebuilds the same ids.
 */
import { randomUUID } from "node:crypto"
import type { EmulatorConfig } from "./config.ts"

export interface TenantRecord {
  readonly id: string
  readonly name: string
  dedicatedDomain: string | undefined
}

export interface DataCoreJson {
  readonly id: string
  readonly tenantId: string
  readonly tenant: string
  readonly name: string
  readonly description: string
  readonly accessControl: "private"
  readonly deleteProtection: false
  readonly isDeleting: false
  readonly isFlowcoreManaged: false
}

export interface FlowTypeJson {
  readonly id: string
  readonly tenantId: string
  readonly dataCoreId: string
  readonly name: string
  readonly description: string
  readonly isDeleting: false
}

export interface EventTypeJson {
  readonly id: string
  readonly tenantId: string
  readonly dataCoreId: string
  readonly flowTypeId: string
  readonly name: string
  readonly description: string
  readonly isTruncating: false
  readonly isDeleting: false
  readonly createdAt: string
  readonly updatedAt: null
}

export type ResourceLine =
  | { readonly k: "tenant"; readonly id: string; readonly name: string }
  | {
      readonly k: "dataCore"
      readonly id: string
      readonly tenantId: string
      readonly name: string
      readonly description: string
    }
  | {
      readonly k: "flowType"
      readonly id: string
      readonly dataCoreId: string
      readonly name: string
      readonly description: string
    }
  | {
      readonly k: "eventType"
      readonly id: string
      readonly flowTypeId: string
      readonly name: string
      readonly description: string
      readonly createdAt: string
    }

/** Thrown for conflicting or dangling resources; the emulator turns it into an `EmulatorError` or an HTTP status. */
export class RegistryConflict extends Error {}

const key = (parentId: string, name: string) => `${parentId}\u0000${name}`

const pushTo = <K, V>(map: Map<K, Array<V>>, k: K, v: V) => {
  const list = map.get(k)
  if (list === undefined) map.set(k, [v])
  else list.push(v)
}

export class Registry {
  readonly #tenantsByName = new Map<string, TenantRecord>()
  readonly #tenantsById = new Map<string, TenantRecord>()
  readonly #dataCoresById = new Map<string, DataCoreJson>()
  readonly #dataCoresByName = new Map<string, DataCoreJson>()
  readonly #dataCoresOfTenant = new Map<string, Array<DataCoreJson>>()
  readonly #flowTypesById = new Map<string, FlowTypeJson>()
  readonly #flowTypesByName = new Map<string, FlowTypeJson>()
  readonly #flowTypesOfDataCore = new Map<string, Array<FlowTypeJson>>()
  readonly #eventTypesById = new Map<string, EventTypeJson>()
  readonly #eventTypesByName = new Map<string, EventTypeJson>()
  readonly #eventTypesOfFlowType = new Map<string, Array<EventTypeJson>>()
  readonly #onCreate: (line: ResourceLine) => void
  #replaying = false

  constructor(onCreate: (line: ResourceLine) => void) {
    this.#onCreate = onCreate
  }

  #persist(line: ResourceLine): void {
    if (!this.#replaying) this.#onCreate(line)
  }

  tenantByName(name: string): TenantRecord | undefined {
    return this.#tenantsByName.get(name)
  }
  tenantById(id: string): TenantRecord | undefined {
    return this.#tenantsById.get(id)
  }
  dataCoreById(id: string): DataCoreJson | undefined {
    return this.#dataCoresById.get(id)
  }
  dataCoreByName(tenantId: string, name: string): DataCoreJson | undefined {
    return this.#dataCoresByName.get(key(tenantId, name))
  }
  dataCoresOf(tenantId: string): ReadonlyArray<DataCoreJson> {
    return this.#dataCoresOfTenant.get(tenantId) ?? []
  }
  flowTypeById(id: string): FlowTypeJson | undefined {
    return this.#flowTypesById.get(id)
  }
  flowTypeByName(dataCoreId: string, name: string): FlowTypeJson | undefined {
    return this.#flowTypesByName.get(key(dataCoreId, name))
  }
  flowTypesOf(dataCoreId: string): ReadonlyArray<FlowTypeJson> {
    return this.#flowTypesOfDataCore.get(dataCoreId) ?? []
  }
  eventTypeById(id: string): EventTypeJson | undefined {
    return this.#eventTypesById.get(id)
  }
  eventTypeByName(flowTypeId: string, name: string): EventTypeJson | undefined {
    return this.#eventTypesByName.get(key(flowTypeId, name))
  }
  eventTypesOf(flowTypeId: string): ReadonlyArray<EventTypeJson> {
    return this.#eventTypesOfFlowType.get(flowTypeId) ?? []
  }

  /** A data core of the tenant by id or, failing that, by name (ingestion routes accept both). */
  dataCoreByIdOrName(tenantId: string, idOrName: string): DataCoreJson | undefined {
    const byId = this.#dataCoresById.get(idOrName)
    return byId !== undefined && byId.tenantId === tenantId ? byId : this.dataCoreByName(tenantId, idOrName)
  }

  #freshId(id: string | undefined, kind: string, name: string, taken: Map<string, unknown>): string {
    if (id === undefined) return randomUUID()
    if (taken.has(id)) throw new RegistryConflict(`${kind} "${name}": id ${id} is already used by another ${kind}`)
    return id
  }

  createTenant(name: string, id?: string): TenantRecord {
    const tenant: TenantRecord = {
      id: this.#freshId(id, "tenant", name, this.#tenantsById),
      name,
      dedicatedDomain: undefined
    }
    this.#tenantsByName.set(name, tenant)
    this.#tenantsById.set(tenant.id, tenant)
    this.#persist({ k: "tenant", id: tenant.id, name })
    return tenant
  }

  createDataCore(tenant: TenantRecord, name: string, id?: string, description = ""): DataCoreJson {
    const dataCore: DataCoreJson = {
      id: this.#freshId(id, "data core", name, this.#dataCoresById),
      tenantId: tenant.id,
      tenant: tenant.name,
      name,
      description,
      accessControl: "private",
      deleteProtection: false,
      isDeleting: false,
      isFlowcoreManaged: false
    }
    this.#dataCoresById.set(dataCore.id, dataCore)
    this.#dataCoresByName.set(key(tenant.id, name), dataCore)
    pushTo(this.#dataCoresOfTenant, tenant.id, dataCore)
    this.#persist({ k: "dataCore", id: dataCore.id, tenantId: tenant.id, name, description })
    return dataCore
  }

  createFlowType(dataCore: DataCoreJson, name: string, id?: string, description = ""): FlowTypeJson {
    const flowType: FlowTypeJson = {
      id: this.#freshId(id, "flow type", name, this.#flowTypesById),
      tenantId: dataCore.tenantId,
      dataCoreId: dataCore.id,
      name,
      description,
      isDeleting: false
    }
    this.#flowTypesById.set(flowType.id, flowType)
    this.#flowTypesByName.set(key(dataCore.id, name), flowType)
    pushTo(this.#flowTypesOfDataCore, dataCore.id, flowType)
    this.#persist({ k: "flowType", id: flowType.id, dataCoreId: dataCore.id, name, description })
    return flowType
  }

  createEventType(
    flowType: FlowTypeJson,
    name: string,
    id?: string,
    description = "",
    createdAt = new Date().toISOString()
  ): EventTypeJson {
    const eventType: EventTypeJson = {
      id: this.#freshId(id, "event type", name, this.#eventTypesById),
      tenantId: flowType.tenantId,
      dataCoreId: flowType.dataCoreId,
      flowTypeId: flowType.id,
      name,
      description,
      isTruncating: false,
      isDeleting: false,
      createdAt,
      updatedAt: null
    }
    this.#eventTypesById.set(eventType.id, eventType)
    this.#eventTypesByName.set(key(flowType.id, name), eventType)
    pushTo(this.#eventTypesOfFlowType, flowType.id, eventType)
    this.#persist({
      k: "eventType",
      id: eventType.id,
      flowTypeId: flowType.id,
      name,
      description,
      createdAt
    })
    return eventType
  }

  /** Re-creates a persisted resource (journal replay). Throws `RegistryConflict` when its parent is unknown. */
  replay(line: ResourceLine): void {
    this.#replaying = true
    try {
      this.#replayLine(line)
    } finally {
      this.#replaying = false
    }
  }

  #replayLine(line: ResourceLine): void {
    switch (line.k) {
      case "tenant":
        this.createTenant(line.name, line.id)
        return
      case "dataCore": {
        const tenant = this.#tenantsById.get(line.tenantId)
        if (tenant === undefined)
          throw new RegistryConflict(`data core "${line.name}": unknown tenant ${line.tenantId}`)
        this.createDataCore(tenant, line.name, line.id, line.description)
        return
      }
      case "flowType": {
        const dataCore = this.#dataCoresById.get(line.dataCoreId)
        if (dataCore === undefined) {
          throw new RegistryConflict(`flow type "${line.name}": unknown data core ${line.dataCoreId}`)
        }
        this.createFlowType(dataCore, line.name, line.id, line.description)
        return
      }
      case "eventType": {
        const flowType = this.#flowTypesById.get(line.flowTypeId)
        if (flowType === undefined) {
          throw new RegistryConflict(`event type "${line.name}": unknown flow type ${line.flowTypeId}`)
        }
        this.createEventType(flowType, line.name, line.id, line.description, line.createdAt)
        return
      }
    }
  }

  /**
   * Creates what the config declares and is not there yet (matched by name under the same parent, so persisted
   * resources keep their ids across restarts). A configured id that contradicts an existing one is a conflict.
   */
  applyConfig(config: EmulatorConfig): void {
    const check = (kind: string, name: string, wanted: string | undefined, actual: string) => {
      if (wanted !== undefined && wanted !== actual) {
        throw new RegistryConflict(
          `${kind} "${name}" is configured with id ${wanted} but already exists with id ${actual}`
        )
      }
    }
    for (const t of config.tenants ?? []) {
      let tenant = this.tenantByName(t.name)
      if (tenant === undefined) tenant = this.createTenant(t.name, t.id)
      else check("tenant", t.name, t.id, tenant.id)
      tenant.dedicatedDomain = t.dedicated?.domain
      for (const dc of t.dataCores) {
        let dataCore = this.dataCoreByName(tenant.id, dc.name)
        if (dataCore === undefined) dataCore = this.createDataCore(tenant, dc.name, dc.id, dc.description)
        else check("data core", dc.name, dc.id, dataCore.id)
        for (const ft of dc.flowTypes) {
          let flowType = this.flowTypeByName(dataCore.id, ft.name)
          if (flowType === undefined) flowType = this.createFlowType(dataCore, ft.name, ft.id, ft.description)
          else check("flow type", ft.name, ft.id, flowType.id)
          for (const et of ft.eventTypes) {
            const eventType = this.eventTypeByName(flowType.id, et.name)
            if (eventType === undefined) this.createEventType(flowType, et.name, et.id, et.description)
            else check("event type", et.name, et.id, eventType.id)
          }
        }
      }
    }
  }
}
