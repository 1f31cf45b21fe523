// @peculiar/x509 (through tsyringe) needs the Reflect metadata API; it must be loaded before it.
import 'reflect-metadata';
