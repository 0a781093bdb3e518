"""Pure-numpy URDF chain parsing and FK, checked against PyBullet."""

import json
from pathlib import Path

import numpy as np
import pybullet as p
import pybullet_data
import pytest
from trpo_ros.robot import kinematics
from trpo_ros.robot.kinematics import forward_kinematics, parse_chain, parse_joints, UrdfError

pytestmark = pytest.mark.unit

ROBOTS = [('kuka_iiwa/model.urdf', 'lbr_iiwa_link_7'),
          ('franka_panda/panda.urdf', 'panda_grasptarget'),
          ('franka_panda/panda.urdf', 'panda_hand')]


def _text(name: str) -> str:
    return (Path(pybullet_data.getDataPath()) / name).read_text()


@pytest.mark.parametrize(('urdf', 'ee_link'), ROBOTS)
def test_fk_matches_pybullet(urdf: str, ee_link: str) -> None:
    chain = parse_chain(_text(urdf), ee_link=ee_link)
    names = kinematics.movable_joint_names(chain)
    base_pos, base_orn = (0.3, -0.2, 0.1), p.getQuaternionFromEuler((0.1, -0.2, 0.7))
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(Path(pybullet_data.getDataPath()) / urdf), base_pos, base_orn,
                          useFixedBase=True, physicsClientId=cid)
        infos = [p.getJointInfo(body, i, physicsClientId=cid)
                 for i in range(p.getNumJoints(body, physicsClientId=cid))]
        index = {info[1].decode(): info[0] for info in infos}
        ee_index = next(info[0] for info in infos if info[12].decode() == ee_link)
        rng = np.random.default_rng(0)
        worst = 0.0
        for _ in range(30):
            q = rng.uniform(-2.5, 2.5, size=len(names))
            for name, value in zip(names, q, strict=True):
                p.resetJointState(body, index[name], value, physicsClientId=cid)
            expected = p.getLinkState(body, ee_index, computeForwardKinematics=True,
                                      physicsClientId=cid)[4]
            got = forward_kinematics(chain, q, base_pos, base_orn)
            worst = max(worst, float(np.abs(got - np.array(expected)).max()))
        assert worst < 1e-6
    finally:
        p.disconnect(physicsClientId=cid)


def test_chain_layout_and_json() -> None:
    chain = parse_chain(_text('franka_panda/panda.urdf'), None, 'panda_grasptarget')
    assert [j['joint_name'] for j in chain][:7] == [f'panda_joint{i}' for i in range(1, 8)]
    assert [j['type'] for j in chain][7:] == ['fixed', 'fixed', 'fixed']
    assert set(chain[0]) >= {'joint_name', 'type', 'xyz', 'rpy', 'axis'}
    json.dumps(chain)
    # Keyword and positional (contract order) forms agree.
    assert chain == parse_chain(_text('franka_panda/panda.urdf'), ee_link='panda_grasptarget')


def test_fk_accepts_mapping_and_named_order() -> None:
    chain = parse_chain(_text('kuka_iiwa/model.urdf'), ee_link='lbr_iiwa_link_7')
    names = kinematics.movable_joint_names(chain)
    q = np.linspace(-1, 1, 7)
    ref = forward_kinematics(chain, q)
    assert np.allclose(forward_kinematics(chain, dict(zip(names, q, strict=True))), ref)
    assert np.allclose(forward_kinematics(chain, q[::-1], joint_names=names[::-1]), ref)
    with pytest.raises(ValueError, match='expected 7'):
        forward_kinematics(chain, q[:3])


def test_rpy_is_fixed_axis_xyz() -> None:
    r, pi, y = 0.3, -0.4, 1.1
    expected = np.array(p.getMatrixFromQuaternion(p.getQuaternionFromEuler((r, pi, y))))
    assert np.allclose(kinematics.rpy_to_matrix((r, pi, y)).ravel(), expected)


def test_limits_from_urdf() -> None:
    joints = {j.name: j for j in parse_joints(_text('franka_panda/panda.urdf'))}
    j4 = joints['panda_joint4']
    assert (j4.lower, j4.upper, j4.velocity, j4.effort) == (-3.1416, 0.0, 2.175, 87.0)


def test_bad_links_raise() -> None:
    text = _text('kuka_iiwa/model.urdf')
    with pytest.raises(UrdfError, match='no_such_link'):
        parse_chain(text, ee_link='no_such_link')
    with pytest.raises(UrdfError, match='not a descendant'):
        parse_chain(text, base_link='lbr_iiwa_link_5', ee_link='lbr_iiwa_link_2')
    with pytest.raises(UrdfError, match='not valid XML'):
        parse_joints('<robot')
