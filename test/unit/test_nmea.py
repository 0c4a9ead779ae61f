"""NMEA 0183 / AIS: the decoder on real sentence formats (AIS encoded and decoded by pyais), its refusals, and the
bridge's picture built from the events (through ROS: ros/test_nmea_ros.py)."""
import math

import pyais
import pytest

from tango2_ros.sds.nmea_out import ais_position, rmc, sentence
from tango2_ros.sds.nmea import (AisReport, Depth, Fix, Heading, Motion, NmeaDecoder, NmeaError, RadarTarget, RateOfTurn,
                                 Wind, split_datagram)
from tango2_ros.sds.intake import SensorIntake
from tango2_ros.sds.picture import BridgePicture, Timeouts


def test_own_ship_sentences():
    decoder = NmeaDecoder()
    fix = decoder.feed(rmc(35.05, 129.0125, 45.0, 12.0))
    assert isinstance(fix, Fix) and fix.valid and fix.latitude_deg == pytest.approx(35.05)
    assert fix.longitude_deg == pytest.approx(129.0125) and (fix.course_deg, fix.speed_kn) == (45.0, 12.0)
    assert not decoder.feed(rmc(35.05, 129.0, 45.0, 12.0, status="V")).valid
    assert decoder.feed(sentence("GPGGA,120000,3503.000,N,12900.750,E,0,00,,,M,,M,,")).valid is False
    assert decoder.feed(sentence("HEHDT,359.9,T")) == Heading(359.9)
    assert decoder.feed(sentence("GPVTG,045.0,T,048.0,M,012.0,N,022.2,K,A")) == Motion(45.0, 12.0, "VTG")
    radar = decoder.feed(sentence("RATTM,07,2.0,090.0,R,10.0,270.0,T,0.1,20.0,N,TGT7,T,,120000,A"))
    assert radar == RadarTarget(7, 2.0, 90.0, True, 10.0, 270.0, False, "TGT7", "T")
    assert decoder.feed(sentence("GPZDA,120000,28,11,2026,00,00")) is None  # not needed: ignored, not an error


def test_wind_depth_and_rate_of_turn():
    decoder = NmeaDecoder()
    assert decoder.feed(sentence("WIMWV,045.0,R,12.5,N,A")) == Wind(45.0, True, 12.5)
    assert decoder.feed(sentence("WIMWV,270.0,T,10.0,M,A")) == Wind(270.0, False, pytest.approx(19.438, abs=1e-3))
    assert decoder.feed(sentence("WIMWV,045.0,R,12.5,N,V")) is None  # the sensor says the reading is invalid
    assert decoder.feed(sentence("SDDBT,32.8,f,10.0,M,5.4,F")) == Depth(10.0, "DBT")
    assert decoder.feed(sentence("SDDPT,10.0,-1.5,")) == Depth(8.5, "DPT")  # a negative offset: below the keel
    assert decoder.feed(sentence("SDDPT,10.0,0.5,")) == Depth(10.0, "DPT")  # a positive one is to the waterline
    assert decoder.feed(sentence("TIROT,-3.5,A")) == RateOfTurn(-3.5)
    assert decoder.feed(sentence("TIROT,-3.5,V")) is None


def test_the_bridge_picture_from_events():
    picture = BridgePicture(Timeouts(position_stale_s=3.0, ais_s=60.0, radar_s=10.0))
    decoder = NmeaDecoder()
    for line in (rmc(35.0, 129.0, 0.0, 10.0), sentence("HEHDT,000.0,T"), sentence("WIMWV,000.0,R,10.0,N,A"),
                 sentence("SDDBT,,f,25.0,M,,F"), sentence("TIROT,2.0,A")):
        assert picture.apply(decoder.feed(line), now=100.0) == ""
    own = picture.own_ship(now=101.0)
    assert own.position_valid and own.heading_valid and own.depth_m == 25.0 and own.rate_of_turn_deg_min == 2.0
    assert own.wind_speed_kn == pytest.approx(0.0, abs=1e-9)  # 10 kn from ahead at 10 kn: no true wind
    assert own.sources == ["RMC", "HDT", "DBT", "MWV"]
    stale = picture.own_ship(now=110.0)
    assert not stale.position_valid and math.isnan(stale.depth_m) and math.isnan(stale.heading_deg)
    assert "needs own position" in BridgePicture().apply(decoder.feed(sentence(
        "RATTM,07,2.0,090.0,R,10.0,270.0,T,0.1,20.0,N,TGT7,T,,120000,A")), now=0.0)
    picture.apply(decoder.feed(sentence("RATTM,07,2.0,090.0,T,10.0,270.0,T,0.1,20.0,N,TGT7,T,,120000,A")), now=100.0)
    picture.apply(decoder.feed(ais_position(440123450, 35.1, 129.05, 180.0, 12.0, status=7)), now=100.0)
    targets = {t.id: t for t in picture.current_targets(now=105.0)}
    assert targets["AIS-440123450"].category == "fishing" and targets["RADAR-07"].category == "unknown"
    assert targets["RADAR-07"].longitude_deg > 129.0  # two miles east
    assert list(t.id for t in picture.current_targets(now=111.0)) == ["AIS-440123450"]  # the radar one expired


def test_rmc_carries_utc_time_to_the_hundredth():
    decoder = NmeaDecoder()
    for utc in (1_000_000_000.0, 1_795_000_000.25, 946_684_799.99):  # 2001, 2026, the last instant of 1999
        assert decoder.feed(rmc(35.0, 129.0, 0.0, 0.0, utc_s=utc)).utc_s == pytest.approx(utc, abs=1e-6)
    no_date = decoder.feed(sentence("GPRMC,120000,A,3500.0,N,12900.0,E,1.0,2.0,,,,A"))
    assert math.isnan(no_date.utc_s) and no_date.valid


def test_ais_reports_including_multi_fragment_and_not_available_values():
    decoder = NmeaDecoder()
    report = decoder.feed(ais_position(440123450, 35.1, 129.05, 180.0, 12.0, status=7))
    assert isinstance(report, AisReport) and report.mmsi == 440123450 and report.navigation_status == 7
    assert (report.course_deg, report.speed_kn) == (pytest.approx(180.0), pytest.approx(12.0))
    unknown = decoder.feed(ais_position(440123451, 35.1, 129.05, 360.0, 102.3))
    assert math.isnan(unknown.course_deg) and math.isnan(unknown.speed_kn) and math.isnan(unknown.heading_deg)
    first, second = pyais.encode_dict({"msg_type": 5, "mmsi": 351759000, "shipname": "EVER DIADEM", "ship_type": 70,
                                       "ais_version": 0}, talker_id="AI", sentence_type="VDM")
    assert decoder.feed(first) is None  # waits for the second fragment
    static = decoder.feed(second)
    assert static.name == "EVER DIADEM" and static.ship_type == 70
    own_report = pyais.encode_dict({"msg_type": 1, "mmsi": 1, "lat": 35, "lon": 129}, talker_id="AI")[0]
    assert decoder.feed(own_report) is None  # VDO: own ship's own AIS, not a target


@pytest.mark.parametrize("line, words", [
    (rmc(35.0, 129.0, 0, 12)[:-2] + "00", "bad checksum"),
    (rmc(35.0, 129.0, 0, 12)[:30], "no checksum"),
    ("GPRMC,120000,A*00", "starts with"),
    (sentence("GPRMC,120000,A,9900.000,N,12900.000,E,1.0,0.0,281126,,"), "latitude 99.0000 out of range"),
    (sentence("GPRMC,120000,A"), "too few fields"),
    (sentence("HEHDT,north,T"), "not a number"),
    (sentence("RATTM,07,2.0,090.0,T,10.0,270.0,T,0.1,20.0,X,TGT7,T,,120000,A"), "TTM unit"),
    (sentence("AIVDM,2,3,1,A,55?MbV02,0"), "AIS fragment 3 of 2"),
    (sentence("AIVDM,1,1,,A,!!!!,0"), "cannot be decoded"),
    (sentence("GPRMC,120000,A,3500.0,N,12900.0,E,1.0,2.0,310226,,,A"), "RMC date"),  # 31 February
    (sentence("GPRMC,126100,A,3500.0,N,12900.0,E,1.0,2.0,280226,,,A"), "out of range"),
    (sentence("GPRMC,12,A,3500.0,N,12900.0,E,1.0,2.0,2802,,,A"), "hhmmss"),
    ("$" + "A" * 300 + "*00", "longer than"),
    (sentence("WIMWV,045.0,R,12.5,X,A"), "MWV unit"),
    (sentence("WIMWV,400.0,R,12.5,N,A"), "MWV angle 400.0000 out of range"),
    (sentence("SDDPT,-3.0,0.5,"), "DPT depth -3.0000 out of range"),
    (sentence("TIROT,fast,A"), "not a number"),
])
def test_bad_sentences_are_refused_with_the_reason(line, words):
    with pytest.raises(NmeaError, match=words):
        NmeaDecoder().feed(line)


def test_datagrams_binary_garbage_and_61162_450_framing():
    with pytest.raises(NmeaError, match="not ASCII"):
        split_datagram(bytes(range(200, 256)))
    framed = b"UdPbC\x00\\s:GP0001,n:1*7A\\" + sentence("HEHDT,10.0,T").encode() + b"\r\n"
    assert split_datagram(framed) == [sentence("HEHDT,10.0,T")]
    with pytest.raises(NmeaError, match="tag block"):
        split_datagram(b"\\s:GP0001" + sentence("HEHDT,10.0,T").encode())


def test_the_sensor_intake_counts_every_refusal_and_keeps_the_good_sentences():
    intake = SensorIntake(Timeouts(position_stale_s=3.0, ais_s=60.0, radar_s=10.0))
    good = rmc(35.0, 129.0, 90.0, 12.0) + "\r\n" + ais_position(440123450, 35.1, 129.05, 180.0, 12.0) + "\r\n"
    assert intake.feed(good.encode(), now=100.0) == 1  # one position fix
    assert intake.feed(bytes(range(200, 256)), now=100.5) == 0
    bad_checksum = rmc(35.0, 129.0, 0, 12)[:-2] + "00"
    radar_target = sentence("RATTM,07,2.0,090.0,T,10.0,270.0,T,0.1,20.0,N,TGT7,T,,120000,A")
    assert intake.feed((bad_checksum + "\r\n" + radar_target + "\r\n").encode(), now=101.0) == 0
    assert intake.counts == {"datagrams": 3, "sentences": 4, "rejected": 2, "fixes": 1, "ais": 1, "radar": 1}
    assert "checksum" in intake.last_rejected
    assert intake.own_ship(now=101.0).position_valid
    assert sorted(t.id for t in intake.current_targets(now=101.0)) == ["AIS-440123450", "RADAR-07"]
