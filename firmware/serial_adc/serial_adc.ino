// lsi_ros serial ADC photodiode firmware (Teensy 4.x, Arduino core / Teensyduino).
//
// One ADC sample of the photodiode amplifier per DMD trigger-out pulse, streamed to the host as
// 20-byte frames over USB serial: docs/serial_adc_protocol.md (protocol version 1). The host side
// is lsi_ros/hardware/serial_adc.py. NOT compiled or run by the lsi_ros authors (no board or
// toolchain was available): see firmware/README.md.

#include <Arduino.h>

// ---- wiring and acquisition settings -------------------------------------------------------
static const uint8_t TRIGGER_PIN = 2;      // DMD trigger-out (one rising edge per displayed pattern)
static const uint8_t FRAME_START_PIN = 3;  // optional: DMD "sequence start" output (rising edge)
static const bool USE_FRAME_START = false; // true when FRAME_START_PIN is wired
static const uint8_t PHOTODIODE_PIN = A0;  // amplifier output, 0..3.3 V (never above 3.3 V)
static const uint8_t ADC_BITS = 12;        // Teensy 4.x internal ADC
static const uint8_t OVERSAMPLE = 1;       // readings summed per trigger (value = sum)
static const uint32_t SETTLE_NS = 2000;    // wait after the trigger edge for the amplifier to settle
static const char FIRMWARE[] = "teensy4-1.0";

// ---- protocol --------------------------------------------------------------------------------
static const uint8_t PROTOCOL_VERSION = 1;
static const uint8_t FLAG_SATURATED = 0x01;
static const uint8_t FRAME_SIZE = 20;
static const uint16_t RING_SIZE = 1024;  // samples buffered between the interrupt and USB (power of 2)

struct Sample {
  uint16_t pattern_index;
  uint32_t trigger_sequence;
  uint32_t device_time_us;
  uint32_t adc_value;
  uint8_t flags;
};

static volatile Sample ring[RING_SIZE];
static volatile uint16_t ring_head = 0;  // written by the interrupt
static volatile uint16_t ring_tail = 0;  // read by loop()
static volatile bool streaming = false;
static volatile bool frame_start_pending = false;
static volatile uint32_t trigger_sequence = 0;
static volatile uint16_t pattern_index = 0;
static uint16_t num_patterns = 0;  // M; 0 = not set
static uint32_t full_scale = 0;

static char line[64];
static uint8_t line_length = 0;

// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final xor ("123456789" -> 0x29B1).
static uint16_t crc16_ccitt_false(const uint8_t *data, size_t length) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < length; i++) {
    crc ^= (uint16_t)data[i] << 8;
    for (uint8_t bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

static void put_u16(uint8_t *p, uint16_t v) {
  p[0] = v & 0xFF;
  p[1] = v >> 8;
}

static void put_u32(uint8_t *p, uint32_t v) {
  for (uint8_t i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xFF;
}

static void encode_frame(const Sample &s, uint8_t *frame) {
  frame[0] = 0xA5;
  frame[1] = 0x5A;
  frame[2] = PROTOCOL_VERSION;
  frame[3] = s.flags;
  put_u16(frame + 4, s.pattern_index);
  put_u32(frame + 6, s.trigger_sequence);
  put_u32(frame + 10, s.device_time_us);
  put_u32(frame + 14, s.adc_value);
  put_u16(frame + 18, crc16_ccitt_false(frame, 18));
}

// A trigger the ring cannot hold is still counted: the host sees the gap in trigger_sequence.
static void on_trigger() {
  if (!streaming) return;
  uint32_t now = micros();
  if (frame_start_pending) {
    pattern_index = 0;
    frame_start_pending = false;
  }
  delayNanoseconds(SETTLE_NS);
  uint32_t value = 0;
  bool saturated = false;
  for (uint8_t i = 0; i < OVERSAMPLE; i++) {
    uint32_t reading = analogRead(PHOTODIODE_PIN);
    saturated |= reading >= full_scale;
    value += reading;
  }
  uint16_t next = (ring_head + 1) & (RING_SIZE - 1);
  if (next != ring_tail) {
    volatile Sample &s = ring[ring_head];
    s.pattern_index = pattern_index;
    s.trigger_sequence = trigger_sequence;
    s.device_time_us = now;
    s.adc_value = value;
    s.flags = saturated ? FLAG_SATURATED : 0;
    ring_head = next;
  }
  trigger_sequence++;
  pattern_index = (pattern_index + 1 == num_patterns) ? 0 : pattern_index + 1;
}

static void on_frame_start() {
  frame_start_pending = true;
}

// Send the buffered samples (as much as the USB buffer takes without blocking).
static void send_samples() {
  uint8_t frame[FRAME_SIZE];
  while (ring_tail != ring_head && Serial.availableForWrite() >= FRAME_SIZE) {
    Sample s;
    noInterrupts();
    s.pattern_index = ring[ring_tail].pattern_index;
    s.trigger_sequence = ring[ring_tail].trigger_sequence;
    s.device_time_us = ring[ring_tail].device_time_us;
    s.adc_value = ring[ring_tail].adc_value;
    s.flags = ring[ring_tail].flags;
    interrupts();
    encode_frame(s, frame);
    Serial.write(frame, FRAME_SIZE);
    ring_tail = (ring_tail + 1) & (RING_SIZE - 1);
  }
}

static void reply(const char *text) {
  Serial.print(text);
  Serial.print('\n');
}

static void execute(char *command) {
  if (strcmp(command, "IDN?") == 0) {
    Serial.print("LSI-SERIAL-ADC,");
    Serial.print(PROTOCOL_VERSION);
    Serial.print(',');
    Serial.print(FIRMWARE);
    Serial.print(',');
    Serial.print(ADC_BITS);
    Serial.print('\n');
  } else if (strcmp(command, "STOP") == 0) {
    streaming = false;
    uint32_t started = millis();
    while (ring_tail != ring_head && millis() - started < 200) send_samples();  // reply after the last frame
    reply("OK STOP");
  } else if (strncmp(command, "M ", 2) == 0) {
    char *end = nullptr;
    long m = strtol(command + 2, &end, 10);
    if (streaming) {
      reply("ERR busy: STOP first");
    } else if (end == command + 2 || *end != '\0' || m < 1 || m > 65535) {
      reply("ERR M must be 1..65535");
    } else {
      num_patterns = (uint16_t)m;
      Serial.print("OK M ");
      Serial.print(num_patterns);
      Serial.print('\n');
    }
  } else if (strcmp(command, "START") == 0) {
    if (num_patterns == 0) {
      reply("ERR set M first");
      return;
    }
    streaming = false;
    noInterrupts();
    ring_head = ring_tail = 0;
    trigger_sequence = 0;
    pattern_index = 0;
    frame_start_pending = false;
    interrupts();
    reply("OK START");  // precedes the first frame
    streaming = true;
  } else {
    Serial.print("ERR unknown command '");
    Serial.print(command);
    Serial.print("'\n");
  }
}

static void read_commands() {
  while (Serial.available() > 0) {
    char c = (char)Serial.read();
    if (c == '\r') continue;
    if (c == '\n') {
      line[line_length] = '\0';
      execute(line);
      line_length = 0;
    } else if (line_length < sizeof(line) - 1) {
      line[line_length++] = c;
    } else {
      line_length = 0;  // overlong line: drop it
    }
  }
}

void setup() {
  Serial.begin(2000000);  // USB CDC: the rate is ignored; a UART build needs >= 2 Mbaud at 9.5 kHz
  analogReadResolution(ADC_BITS);
  analogReadAveraging(1);
  full_scale = (1u << ADC_BITS) - 1;
  pinMode(TRIGGER_PIN, INPUT);
  attachInterrupt(digitalPinToInterrupt(TRIGGER_PIN), on_trigger, RISING);
  if (USE_FRAME_START) {
    pinMode(FRAME_START_PIN, INPUT);
    attachInterrupt(digitalPinToInterrupt(FRAME_START_PIN), on_frame_start, RISING);
  }
}

void loop() {
  read_commands();
  send_samples();
}
