// ---- the function context (what runtimes/node provides at run time as getContext() and the `ctx` global) ----

export type Comparable<V> = V | (V extends string ? Date : never);

/** One field's condition: a value (equality) or operators. */
export type Condition<V> = Comparable<V> | {
  $eq?: Comparable<V>;
  $ne?: Comparable<V>;
  $lt?: Comparable<V>;
  $lte?: Comparable<V>;
  $gt?: Comparable<V>;
  $gte?: Comparable<V>;
  $in?: Comparable<V>[];
};

/** A filter as an object (`{views: {$gt: 10}}`, `$and`, `$or`), or a CEL string as in `?filter=`. */
export type Filter<R> = string | ({ [K in keyof R]?: Condition<R[K]> } & { $and?: Filter<R>[]; $or?: Filter<R>[] });

export interface ListOptions<R> {
  filter?: Filter<R>;
  sort?: string;
  page?: number;
  perPage?: number;
  fields?: (keyof R & string)[];
  expand?: string[];
  skipTotal?: boolean;
}

//#include list_result.ts

/** alyx.collections.<name>: calls run as the function's caller (their rules apply). */
export interface CollectionApi<R, C, U> {
  list(options?: ListOptions<R>): Promise<ListResult<R>>;
  get(id: string): Promise<R>;
  create(data: C): Promise<R>;
  update(id: string, data: U): Promise<R>;
  delete(id: string): Promise<void>;
  deleteMany(filter: Filter<R>): Promise<{ count: number }>;
  updateMany(filter: Filter<R>, data: U): Promise<{ count: number }>;
}

export interface CustomEvent {
  type: string;
  source: string;
  action: string;
  payload?: unknown;
}

/** The caller (null when anonymous). */
export interface AuthInfo {
  id: string;
  email: string;
  role: string;
  verified: boolean;
}

export interface AlyxApi {
  collections: Collections;
  functions: { invoke<T = unknown>(name: string, input?: unknown): Promise<T> };
  events: { publish(event: CustomEvent): Promise<unknown> };
}

export interface Context {
  alyx: AlyxApi;
  auth: AuthInfo | null;
  env: Record<string, string>;
}

declare global {
  // eslint-disable-next-line no-var
  var ctx: Context | undefined;
}

/** The context of the current invocation (the same object as the `ctx` global the runtime sets). */
export function getContext(): Context {
  const context = globalThis.ctx;
  if (!context) throw new Error("getContext() is only available inside an Alyx function invocation");
  return context;
}
